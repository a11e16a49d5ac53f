/**
 * `GET /metrics`: the engine's Effect `Metric`s (attempts, retries, timeouts, in-flight, breaker
 * states, …) in Prometheus text format, bridged through `@effect/opentelemetry` into the
 * OpenTelemetry Prometheus exporter, which is serialized on our own route (no second port).
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Context, Effect, Layer } from "effect"

export class PrometheusText extends Context.Tag("parallel-processor/PrometheusText")<
  PrometheusText,
  { readonly render: Effect.Effect<string> }
>() {}

export const layer: Layer.Layer<PrometheusText> = Layer.unwrapEffect(
  Effect.sync(() => {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const serializer = new PrometheusSerializer()
    const render = Effect.promise(() => exporter.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    return Layer.succeed(PrometheusText, { render }).pipe(
      Layer.provideMerge(OtelMetrics.layer(() => exporter)),
      Layer.provide(OtelResource.layer({ serviceName: "parallel-processor", serviceVersion: "0.1.0" }))
    )
  })
)
