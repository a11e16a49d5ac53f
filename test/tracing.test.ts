/**
 * Upstream calls make spans only when a tracer that records them is installed (`src/upstream/tracing.ts`):
 * with Effect's built-in tracer the per-call spans are skipped as pure cost; with a real one (e.g.
 * OpenTelemetry's) each client's span and the HTTP client's span are there, the latter its child.
 * The engine likewise (`src/engine/internal/spans.ts`): its item and attempt spans exist only under
 * a recording tracer, and then form a tree that matches the results whatever the tasks do.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Option, Tracer } from "effect"
import * as fc from "effect/FastCheck"
import { Engine, type ItemResult, RetryPolicy } from "../src/index.js"
import { Sandbox } from "../src/sandbox/Sandbox.js"
import { MarketClient } from "../src/upstream/Market.js"
import { tracingOn } from "../src/upstream/tracing.js"
import { makeHarness, runVirtual, type Step } from "./support/harness.js"
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

// ---- the engine's item and attempt spans ---------------------------------------------------------

const step: fc.Arbitrary<Step> = fc.record({
  latencyMs: fc.integer({ min: 0, max: 500 }),
  outcome: fc.constantFrom<Step["outcome"]>("ok", "ok", "transient", "permanent", "rate_limited", "skip", "defect", "hang"),
  retryAfterMs: fc.integer({ min: 0, max: 1_000 })
})
const scenario = fc.record({
  scripts: fc.array(fc.array(step, { minLength: 1, maxLength: 3 }), { minLength: 0, maxLength: 6 }),
  limit: fc.integer({ min: 1, max: 4 }),
  maxRetries: fc.integer({ min: 0, max: 2 })
})

const runScenario = (s: typeof scenario extends fc.Arbitrary<infer T> ? T : never) => {
  const h = makeHarness((index, attempt) => {
    const script = s.scripts[index] ?? []
    return script[Math.min(attempt, script.length) - 1] ?? { latencyMs: 1, outcome: "ok" }
  })
  const run = Engine.run(
    s.scripts.map((_, i) => i),
    h.task,
    { maxConcurrent: s.limit, attemptTimeout: Duration.seconds(1), retry: RetryPolicy.make({ maxRetries: s.maxRetries }) },
    { runId: "run-1" }
  )
  return { h, run: runVirtual(Effect.withSpan(run, "caller")) }
}

const outcomeOf = (r: ItemResult.ItemResult<unknown>) => (r.status === "succeeded" ? "succeeded" : r.status === "skipped" ? "skipped" : "failed")

describe("engine spans follow the installed tracer", () => {
  it.effect("built-in tracer: the task runs under the caller's span, no item or attempt span between", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const task = () => Effect.map(Effect.orDie(Effect.currentSpan), (span) => seen.push(span.name))
      yield* Engine.run([1, 2, 3], task, { maxConcurrent: 2 }).pipe(Effect.withSpan("caller"))
      expect(seen).toEqual(["caller", "caller", "caller"])
    }))

  it.effect.prop(
    "recording tracer: one ended item span per item under the caller, its attempts under it in order, attributes match the results",
    [scenario],
    ([s]) => {
      const { tracer, spans } = recording()
      const { h, run } = runScenario(s)
      return Effect.gen(function* () {
        const results = yield* run
        const caller = spans.find((x) => x.name === "caller")
        const items = spans.filter((x) => x.name === "engine.item")
        const attempts = spans.filter((x) => x.name === "engine.attempt")
        // Every span ended: nothing is left unexported.
        expect(spans.every((x) => x.status._tag === "Ended")).toBe(true)
        for (const result of results) {
          const called = h.calls.filter((c) => c.index === result.index)
          const item = items.filter((x) => x.attributes.get("item.index") === result.index)
          if (called.length === 0) {
            expect(item).toEqual([])
            continue
          }
          expect(item.length).toBe(1)
          const span = item[0]
          expect(Option.map(Option.flatMap(Option.fromNullable(span), (x) => x.parent), (p) => p.spanId)).toEqual(Option.some(caller?.spanId))
          expect(span?.attributes.get("item.outcome")).toBe(outcomeOf(result))
          expect(span?.attributes.get("run.id")).toBe("run-1")
          const mine = attempts.filter((a) => Option.getOrUndefined(a.parent)?.spanId === span?.spanId)
          expect(mine.map((a) => a.attributes.get("attempt.number"))).toEqual(called.map((c) => c.attempt))
          expect(mine.map((a) => a.attributes.get("retry.count"))).toEqual(called.map((c) => c.attempt - 1))
          // Every try but the last says a retry follows; the last says so only if the item failed for good.
          mine.forEach((a, i) => {
            const failed = a.status._tag === "Ended" && Exit.isFailure(a.status.exit)
            if (i < mine.length - 1) {
              expect(failed).toBe(true)
              expect(a.attributes.get("retry.scheduled")).toBe(true)
              expect(typeof a.attributes.get("retry.class")).toBe("string")
            }
          })
          const last = mine[mine.length - 1]
          if (result.status === "succeeded") expect(last?.attributes.get("error.type")).toBeUndefined()
          else if (result.error.type === "timeout") expect(last?.attributes.get("error.type")).toBe("AttemptTimeout")
          else expect(typeof last?.attributes.get("error.type")).toBe("string")
        }
        expect(attempts.length).toBe(h.calls.length)
      }).pipe(Effect.withTracer(tracer))
    },
    { fastCheck: { numRuns: 15 } }
  )
})
