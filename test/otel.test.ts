/**
 * OpenTelemetry traces end to end: the service (`Server.layer`, sandbox upstreams) exports over
 * OTLP/HTTP JSON to a small receiver this test runs on 127.0.0.1 (a node:http server keeping every
 * POST to /v1/traces). One batch with a caller's `traceparent` must come back as one span tree:
 * the caller's span → the HTTP request's span → … → the job's span → items → attempts → upstream
 * calls, with the attributes the README lists, and a failed try that is retried saying so. Without
 * an endpoint nothing is installed (Effect's built-in tracer stays); the service's shutdown (and the
 * exporter's scope) sends what it still holds; a collector refusing exports costs the service nothing
 * and its headers' values are never logged.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, DefaultServices, Duration, Effect, Layer, Option, Redacted, Schema, Tracer } from "effect"
import * as TraceSampling from "../src/http/TraceSampling.js"
import * as Tracing from "../src/http/Tracing.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { tracingOn } from "../src/upstream/tracing.js"
import { eventually, json, rawJson, Service, serviceLayer } from "./support/http.js"
import { attr, childrenOf, receiver, receiverAnswering, SERVER, STATUS_ERROR } from "./support/otlp.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER_SPAN = "00f067aa0ba902b7"
const HEADER_SECRET = "otel-secret-789"

const JobAnswer = Schema.Struct({ id: Schema.String, status: Schema.String })

describe("OpenTelemetry traces over OTLP/HTTP", () => {
  it.scopedLive("one batch with a traceparent: request → job → items → attempts → upstream calls, a retried failure", () =>
    Effect.gen(function* () {
      const received = yield* receiver
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: received.url,
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_EXPORTER_OTLP_HEADERS: `x-api-key=${HEADER_SECRET}`,
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test"
      }
      yield* Effect.gen(function* () {
        const { url, logs } = yield* Service
        const sandbox = yield* Sandbox.Sandbox
        // Two calls at once on a route that serves one: the second gets a 503 and is retried.
        yield* sandbox.setKnobs("interactions", {
          latency: { kind: "fixed", ms: 50 },
          capacity: 1,
          overCapacity: "503",
          retryAfter: { kind: "none" }
        })
        const posts = [
          { postId: "p0", articleId: "a0", kolSerial: "101" },
          { postId: "p1", articleId: "a1", kolSerial: "101" }
        ]
        const answer = yield* rawJson(
          `${url}/api/interactions/fetch-all-interactions`,
          "POST",
          { posts, maxConcurrent: 2 },
          { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` }
        )
        expect(answer.status).toBe(200)
        const job = yield* Schema.decodeUnknown(JobAnswer)(json(answer))

        const spans = received.spans
        const jobSpan = yield* eventually(
          Effect.suspend(() => {
            const found = spans.find((s) => s.name === "JobRunner.execute" && attr(s, "job.id") === job.id)
            const request = spans.find((s) => s.kind === SERVER && s.traceId === TRACE_ID)
            return found !== undefined && request !== undefined ? Effect.succeed(found) : Effect.fail("not exported yet")
          })
        )

        // The request continues the caller's trace, under the caller's span.
        const request = spans.find((s) => s.kind === SERVER && s.traceId === TRACE_ID)
        expect(request?.parentSpanId).toBe(CALLER_SPAN)
        expect(attr(request, "http.request.method")).toBe("POST")
        expect(attr(request, "http.response.status_code")).toBe(200)
        // The job runs in the same trace (in one process, under the workflow's spans).
        expect(jobSpan.traceId).toBe(TRACE_ID)
        expect(attr(jobSpan, "processor")).toBe("interactions")
        expect(attr(jobSpan, "job.kind")).toBe("interactions")
        expect(attr(jobSpan, "job.outcome")).toBe("finished")

        const items = childrenOf(spans, jobSpan, "engine.item")
        expect(items.map((i) => attr(i, "item.index")).sort()).toEqual([0, 1])
        expect(items.every((i) => attr(i, "item.outcome") === "succeeded" && attr(i, "run.id") === job.id)).toBe(true)
        const attempts = items.flatMap((i) => childrenOf(spans, i, "engine.attempt"))
        expect(attempts.length).toBe(3)

        // The retried item: a failed first attempt that says why and that a retry follows, then a second.
        const retried = items.find((i) => attr(i, "item.tries") === 2)
        const [first, second] = childrenOf(spans, retried, "engine.attempt").sort(
          (a, b) => Number(attr(a, "attempt.number")) - Number(attr(b, "attempt.number"))
        )
        expect(first?.status.code).toBe(STATUS_ERROR)
        expect(attr(first, "error.type")).toBe("Transient")
        expect(attr(first, "retry.class")).toBe("transient")
        expect(attr(first, "retry.scheduled")).toBe(true)
        expect(attr(first, "http.response.status_code")).toBe(503)
        expect(attr(first, "retry.count")).toBe(0)
        expect(attr(second, "attempt.number")).toBe(2)
        expect(attr(second, "retry.count")).toBe(1)
        expect(second?.status.code).not.toBe(STATUS_ERROR)

        // Each attempt's upstream call, and the HTTP request it made with the upstream's status.
        for (const attempt of attempts) {
          const [call] = childrenOf(spans, attempt, "ForumClient.interactions")
          expect(call).toBeDefined()
          expect(attr(call, "upstream")).toBe("forum")
          const requests = spans.filter((s) => s.parentSpanId === call?.spanId && s.name.startsWith("http.client"))
          expect(requests.length).toBeGreaterThanOrEqual(1)
        }
        const failedCall = childrenOf(spans, first, "ForumClient.interactions")[0]
        expect(attr(failedCall, "error.type")).toBe("Transient")
        expect(attr(failedCall, "http.response.status_code")).toBe(503)
        const statuses = spans
          .filter((s) => s.name.startsWith("http.client") && s.traceId === TRACE_ID)
          .map((s) => attr(s, "http.response.status_code"))
        expect(statuses).toContain(503)
        expect(statuses).toContain(200)

        // Database statements are kept under a request or a job, never as traces of their own.
        expect(spans.some((s) => s.name === "sql.execute" && s.traceId === TRACE_ID)).toBe(true)
        expect(spans.filter((s) => s.name.startsWith("sql.") && s.parentSpanId === undefined)).toEqual([])

        // The resource, the exporter's headers, and the header's value never in a log line.
        const resource = received.resources[0] ?? []
        expect(resource.find((a) => a.key === "service.name")?.value.stringValue).toBe("parallel-processor")
        expect(resource.find((a) => a.key === "deployment.environment")?.value.stringValue).toBe("test")
        expect(received.requests.every((r) => r.path === "/v1/traces" && r.headers["x-api-key"] === HEADER_SECRET)).toBe(true)
        expect(received.requests[0]?.headers["content-type"]).toContain("application/json")
        expect(logs.some((l) => l.includes("traces: exporting spans"))).toBe(true)
        expect(logs.filter((l) => l.includes(HEADER_SECRET))).toEqual([])
      }).pipe(Effect.provide(serviceLayer({ env })))
    }), 30_000)
})

describe("the exporter at shutdown and on failure", () => {
  const batch = (url: string) =>
    rawJson(`${url}/api/interactions/fetch-all-interactions`, "POST", { posts: [{ postId: "p0", articleId: "a0", kolSerial: "101" }] })

  it.scopedLive("spans still buffered when the service shuts down are sent as it closes", () =>
    Effect.gen(function* () {
      const received = yield* receiver
      // Nothing would be sent for a minute: only the flush at shutdown can deliver the batch's spans.
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: received.url, OTEL_BSP_SCHEDULE_DELAY: "60000" }
      const jobId = yield* Effect.gen(function* () {
        const { url } = yield* Service
        const answer = yield* batch(url)
        expect(answer.status).toBe(200)
        expect(received.spans).toEqual([])
        return (yield* Schema.decodeUnknown(JobAnswer)(json(answer))).id
      }).pipe(Effect.provide(serviceLayer({ env })))
      const names = received.spans.map((s) => s.name)
      expect(names).toContain("engine.item")
      expect(received.spans.some((s) => s.name === "JobRunner.execute" && attr(s, "job.id") === jobId)).toBe(true)
      expect(received.spans.some((s) => s.kind === SERVER)).toBe(true)
    }), 30_000)

  it.scopedLive("a collector that refuses the exports: the service works on, the failure is logged without the headers' values", () =>
    Effect.gen(function* () {
      const received = yield* receiverAnswering(401)
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: received.url,
        OTEL_BSP_SCHEDULE_DELAY: "50",
        OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${HEADER_SECRET},x-api-key=${HEADER_SECRET}`
      }
      yield* Effect.gen(function* () {
        const { url, logs } = yield* Service
        expect((yield* batch(url)).status).toBe(200)
        yield* eventually(Effect.suspend(() => (logs.some((l) => l.includes("Disabling OtlpTracer")) ? Effect.void : Effect.fail("not yet"))))
        expect(received.requests.length).toBeGreaterThanOrEqual(1)
        expect(received.requests[0]?.headers["x-api-key"]).toBe(HEADER_SECRET)
        expect((yield* batch(url)).status).toBe(200)
        expect(logs.filter((l) => l.includes(HEADER_SECRET))).toEqual([])
      }).pipe(Effect.provide(serviceLayer({ env })))
    }), 30_000)
})

// ---- on only when configured ----------------------------------------------------------------------

const builtIn = Context.get(DefaultServices.liveServices, Tracer.Tracer)

const withEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** The tracer the layers built after `Tracing.layer` see. */
const tracerAfter = (env: Record<string, string>) =>
  Effect.gen(function* () {
    return { tracer: yield* Effect.tracer, on: yield* tracingOn }
  }).pipe(Effect.provide(Layer.provide(Layer.empty, Tracing.layer)), Effect.provide(withEnv(env)))

describe("tracing is off unless an OTLP endpoint is configured", () => {
  it.effect("no endpoint: nothing installed, Effect's built-in tracer stays", () =>
    Effect.gen(function* () {
      const off = yield* tracerAfter({ OTEL_SERVICE_NAME: "x" })
      expect(off.tracer).toBe(builtIn)
      expect(off.on).toBe(false)
      expect(Option.isNone(yield* Tracing.settings.pipe(Effect.provide(withEnv({}))))).toBe(true)
    }))

  it.scoped("an endpoint: the OTLP tracer is what the layers built after it see; OTEL_SDK_DISABLED turns it off", () =>
    Effect.gen(function* () {
      const received = yield* receiver
      const on = yield* tracerAfter({ OTEL_EXPORTER_OTLP_ENDPOINT: received.url })
      expect(on.tracer).not.toBe(builtIn)
      expect(on.on).toBe(true)
      const disabled = yield* tracerAfter({ OTEL_EXPORTER_OTLP_ENDPOINT: received.url, OTEL_SDK_DISABLED: "true" })
      expect(disabled.tracer).toBe(builtIn)
    }))

  it.effect("the standard variables: the base endpoint gets /v1/traces, the traces endpoint is used as is, names and headers", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) => Tracing.settings.pipe(Effect.provide(withEnv(env)), Effect.map(Option.getOrUndefined))
      expect((yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }))?.url).toBe("http://collector:4318/v1/traces")
      expect((yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/otlp/" }))?.url).toBe("http://collector:4318/otlp/v1/traces")
      const both = yield* read({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces.example/api/traces",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc, x-team = t1,broken",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf"
      })
      expect(both?.url).toBe("https://traces.example/api/traces")
      expect(both?.protocol).toBe("http/protobuf")
      expect(both?.serviceName).toBe("parallel-processor")
      expect(both === undefined ? undefined : JSON.stringify(both.headers)).not.toContain("abc")
      expect(Tracing.parseKeyValues("authorization=Bearer%20abc, x-team = t1,broken")).toEqual({
        authorization: "Bearer abc",
        "x-team": "t1"
      })
      // OTEL_SERVICE_NAME wins over the resource's service.name, which wins over the default.
      const named = yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-resource" })
      expect(named?.serviceName).toBeUndefined()
      const both2 = yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_SERVICE_NAME: "svc", OTEL_RESOURCE_ATTRIBUTES: "service.name=r" })
      expect(both2?.serviceName).toBe("svc")
      expect(Option.isNone(yield* Tracing.settings.pipe(Effect.provide(withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_TRACES_EXPORTER: "none" }))))).toBe(true)
      const bad = yield* Effect.either(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }))
      expect(bad._tag).toBe("Left")
      const grpc = yield* Effect.either(read({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }))
      expect(grpc._tag).toBe("Left")
    }))

  it.effect("sampling: parent-based, and no trace of its own for a database statement", () =>
    Effect.gen(function* () {
      const names: Array<string> = []
      const recording = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          names.push(name)
          return builtIn.span(name, parent, context, links, startTime, kind, options)
        },
        context: (f) => f()
      })
      const tracer = TraceSampling.sampled(recording)
      const notSampled = Tracer.externalSpan({ traceId: TRACE_ID, spanId: CALLER_SPAN, sampled: false })
      yield* Effect.gen(function* () {
        yield* Effect.void.pipe(Effect.withSpan("sql.execute"))
        yield* Effect.void.pipe(Effect.withSpan("sql.execute"), Effect.withSpan("job"))
        yield* Effect.void.pipe(Effect.withSpan("child"), Effect.withSpan("sql.transaction"))
        yield* Effect.void.pipe(Effect.withSpan("child"), Effect.withSpan("request", { parent: notSampled }))
      }).pipe(Effect.withTracer(tracer))
      expect(names).toEqual(["job", "sql.execute"])
    }))

  it.scopedLive("closing the exporter's scope sends the spans it still holds", () =>
    Effect.gen(function* () {
      const received = yield* receiver
      // An export interval far beyond the test: only the flush at the scope's close can send it.
      const exporter = Tracing.exporter({
        url: `${received.url}/v1/traces`,
        protocol: "http/json",
        headers: Redacted.make({}),
        serviceName: "flush-test",
        exportInterval: Duration.minutes(10),
        maxBatchSize: 512
      })
      yield* Effect.void.pipe(Effect.withSpan("before-shutdown"), Effect.provide(exporter))
      expect(received.spans.map((s) => s.name)).toEqual(["before-shutdown"])
    }))
})
