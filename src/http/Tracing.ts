/**
 * OpenTelemetry traces for the service, configured by the standard OTel environment variables:
 * with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans go out
 * over OTLP/HTTP through `@effect/opentelemetry`'s OtlpTracer (on @effect/platform's HttpClient; no
 * OTel SDK), JSON unless `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`. Without it nothing is installed:
 * Effect's built-in tracer stays, and the engine and the upstream clients, which look at the tracer
 * when they are built, make no spans of their own (README, "Traces").
 *
 * Built before everything else it is provided to, so the tracer is in place when the clients and
 * the server are built, and closed after them: the exporter's scope sends what is still buffered
 * (bounded by a few seconds) after the last job has stored its results.
 *
 * What is exported: parent-based sampling, and no trace for a background database statement
 * (TraceSampling.ts).
 *
 * `OTEL_EXPORTER_OTLP_HEADERS` usually holds an API key: read as a Redacted, never logged (only the
 * header names are), and its names are added to the redacted headers of the exporter's fibers, whose
 * failed exports are logged at debug level with the request.
 */
import { OtlpSerialization, OtlpTracer } from "@effect/opentelemetry"
import { FetchHttpClient, Headers, HttpMiddleware } from "@effect/platform"
import { Config, type ConfigError, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import * as TraceSampling from "./TraceSampling.js"

const DEFAULT_SERVICE_NAME = "parallel-processor"

/** Not traced: probes and scrapes, every few seconds, would bury the requests that matter. */
const untracedPaths: ReadonlySet<string> = new Set(["/health", "/ready", "/metrics"])

export interface TracingSettings {
  /** Where spans are POSTed: the traces endpoint as given, or the base endpoint + `/v1/traces`. */
  readonly url: string
  readonly protocol: "http/json" | "http/protobuf"
  readonly headers: Redacted.Redacted<Readonly<Record<string, string>>>
  /** `undefined`: `service.name` from OTEL_RESOURCE_ATTRIBUTES. */
  readonly serviceName: string | undefined
  readonly exportInterval: Duration.Duration
  readonly maxBatchSize: number
}

const decodeComponent = (s: string): string => Either.getOrElse(Either.try(() => decodeURIComponent(s)), () => s)

/** `k1=v1,k2=v2` (values URL-encoded, as the OTel spec says); entries without a `=` are skipped. */
export const parseKeyValues = (s: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const entry of s.split(",")) {
    const at = entry.indexOf("=")
    if (at <= 0) continue
    const key = decodeComponent(entry.slice(0, at).trim())
    if (key !== "") out[key] = decodeComponent(entry.slice(at + 1).trim())
  }
  return out
}

const optionalString = (name: string) =>
  Config.string(name).pipe(
    Config.option,
    Config.map(Option.filter((s) => s.trim() !== ""))
  )

const httpUrl = (name: string) =>
  optionalString(name).pipe(
    Config.validate({
      message: "Expected an http(s) URL",
      validation: Option.match({
        onNone: () => true,
        onSome: (s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)
      })
    })
  )

const redactedHeaders = (name: string) =>
  Config.redacted(name).pipe(
    Config.option,
    Config.map(Option.match({ onNone: () => ({}), onSome: (r) => parseKeyValues(Redacted.value(r)) }))
  )

const protocol = (name: string) => Config.literal("http/json", "http/protobuf")(name)

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected a positive integer", validation: (n) => n >= 1 }),
    Config.withDefault(fallback)
  )

/** The exporter's settings, or none: tracing is off. */
export const settings: Config.Config<Option.Option<TracingSettings>> = Config.all({
  disabled: Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  exporter: Config.literal("otlp", "none")("OTEL_TRACES_EXPORTER").pipe(Config.withDefault("otlp")),
  tracesEndpoint: httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
  endpoint: httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT"),
  protocol: protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").pipe(
    Config.orElse(() => protocol("OTEL_EXPORTER_OTLP_PROTOCOL")),
    Config.withDefault("http/json")
  ),
  headers: redactedHeaders("OTEL_EXPORTER_OTLP_HEADERS"),
  tracesHeaders: redactedHeaders("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
  serviceName: optionalString("OTEL_SERVICE_NAME"),
  resourceAttributes: optionalString("OTEL_RESOURCE_ATTRIBUTES"),
  // The batch span processor's settings (ms), standard names and defaults.
  scheduleDelayMs: positiveInt("OTEL_BSP_SCHEDULE_DELAY", 5_000),
  maxBatchSize: positiveInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
}).pipe(
  Config.map((c): Option.Option<TracingSettings> => {
    if (c.disabled || c.exporter === "none") return Option.none()
    const url = Option.orElse(
      c.tracesEndpoint,
      () => Option.map(c.endpoint, (base) => `${base.endsWith("/") ? base : `${base}/`}v1/traces`)
    )
    const fromResource = Option.map(c.resourceAttributes, (s) => parseKeyValues(s)["service.name"])
    const serviceName = Option.getOrElse(c.serviceName, () =>
      Option.isSome(fromResource) && fromResource.value !== undefined ? undefined : DEFAULT_SERVICE_NAME
    )
    return Option.map(url, (url) => ({
      url,
      protocol: c.protocol,
      headers: Redacted.make({ ...c.headers, ...c.tracesHeaders }),
      serviceName,
      exportInterval: Duration.millis(c.scheduleDelayMs),
      maxBatchSize: c.maxBatchSize
    }))
  })
)

/** The endpoint without credentials or query, for the log. */
const describeUrl = (url: string): string => {
  const u = new URL(url)
  return `${u.protocol}//${u.host}${u.pathname}`
}

/** The OTLP exporter and tracer for `s`, and the server's probes left untraced. */
export const exporter = (s: TracingSettings): Layer.Layer<never> => {
  const headers = Redacted.value(s.headers)
  const names = Object.keys(headers).map((n) => n.toLowerCase())
  const otlp = OtlpTracer.make({
    url: s.url,
    resource: { serviceName: s.serviceName },
    headers,
    exportInterval: s.exportInterval,
    maxBatchSize: s.maxBatchSize
  })
  const tracer = Layer.unwrapScoped(Effect.map(otlp, (t) => Layer.setTracer(TraceSampling.sampled(t)))).pipe(
    Layer.provide(s.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
    Layer.provide(FetchHttpClient.layer),
    Layer.locallyWith(Headers.currentRedactedNames, (redacted) => [...redacted, ...names])
  )
  const announce = Layer.effectDiscard(
    Effect.logInfo("traces: exporting spans over OTLP/HTTP").pipe(
      Effect.annotateLogs({
        endpoint: describeUrl(s.url),
        protocol: s.protocol,
        ...(s.serviceName === undefined ? {} : { service: s.serviceName }),
        ...(names.length === 0 ? {} : { headers: names.join(",") })
      })
    )
  )
  const untraced = Layer.locallyScoped(HttpMiddleware.currentTracerDisabledWhen, (request) =>
    untracedPaths.has(request.url.split("?")[0] ?? "")
  )
  // In sequence, not merged: each changes the fibers' state (the tracer, the untraced paths), which
  // the layers built after this one inherit.
  return announce.pipe(Layer.provide(untraced), Layer.provide(tracer))
}

/** Tracing as the environment configures it: the OTLP exporter, or nothing at all. */
export const layer: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(settings, Option.match({ onNone: () => Layer.empty, onSome: exporter }))
)
