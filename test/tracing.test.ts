/**
 * Upstream calls make spans only when a tracer that records them is installed (`src/upstream/tracing.ts`):
 * with Effect's built-in tracer the per-call spans are skipped as pure cost; with a real one (e.g.
 * OpenTelemetry's) each client's span and the HTTP client's span are there, the latter its child.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, type Exit, Option, Tracer } from "effect"
import { Sandbox } from "../src/sandbox/Sandbox.js"
import { MarketClient } from "../src/upstream/Market.js"
import { tracingOn } from "../src/upstream/tracing.js"
import { world } from "./support/upstreams.js"

/** A tracer that keeps every span it starts, so the test can read names and parents. */
const recording = () => {
  const spans: Array<Tracer.Span> = []
  const base = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = new NativeSpan(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { tracer: base, spans }
}

/** Effect's own span class is internal; a minimal Span that records what the tests read. */
class NativeSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId = Math.random().toString(16).slice(2)
  readonly traceId: string
  readonly sampled = true
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly events: Array<[string, bigint, Record<string, unknown>]> = []
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Tracer.Span["context"],
    readonly links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    _options?: unknown
  ) {
    this.traceId = Option.match(parent, { onNone: () => Math.random().toString(16).slice(2), onSome: (p) => p.traceId })
    this.status = { _tag: "Started", startTime }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
    if (this.status._tag === "Started") this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(key: string, value: unknown) {
    this.attributes.set(key, value)
  }
  event(name: string, startTime: bigint, attributes?: Record<string, unknown>) {
    this.events.push([name, startTime, attributes ?? {}])
  }
  addLinks(_links: ReadonlyArray<Tracer.SpanLink>) {}
}

const screenOnce = Effect.gen(function* () {
  const sandbox = yield* Sandbox
  yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 5 } })
  const market = yield* MarketClient
  return yield* market.screen("limit_up", 3)
})

describe("upstream spans follow the installed tracer", () => {
  it.effect("off with Effect's built-in tracer", () =>
    Effect.gen(function* () {
      expect(yield* tracingOn).toBe(false)
    }))

  it.scopedLive("on with a recording tracer: the client's span and the HTTP request's span under it", () => {
    const { tracer, spans } = recording()
    return Effect.gen(function* () {
      expect(yield* tracingOn).toBe(true)
      const stocks = yield* screenOnce
      expect(stocks.length).toBeGreaterThan(0)
      const client = spans.find((s) => s.name === "MarketClient.screen")
      expect(client).toBeDefined()
      const http = spans.find((s) => s.name.startsWith("http.client"))
      expect(http).toBeDefined()
      expect(Option.map(Option.flatMap(Option.fromNullable(http), (h) => h.parent), (p) => p.spanId)).toEqual(
        Option.map(Option.fromNullable(client), (c) => c.spanId)
      )
      expect(http?.attributes.get("http.response.status_code")).toBe(200)
    }).pipe(Effect.provide(world()), Effect.withTracer(tracer))
  })
})
