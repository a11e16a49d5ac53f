import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Metric, Option, Schedule } from "effect"
import * as fc from "effect/FastCheck"
import { AttemptTimeout, CircuitOpen, Engine, InvalidResponse, Permanent, RateLimited, RetryPolicy, Transient } from "../src/index.js"
import * as EngineMetrics from "../src/engine/EngineMetrics.js"
import { makeHarness, runVirtual } from "./support/harness.js"

const delays = (policy: RetryPolicy.RetryPolicy, error: Parameters<typeof RetryPolicy.nextDelay>[1], n: number) =>
  Effect.gen(function* () {
    const state: RetryPolicy.RetryState = {}
    const out: Array<number | undefined> = []
    for (let i = 0; i < n; i++) {
      const d = yield* RetryPolicy.nextDelay(policy, error, state, 0)
      out.push(Option.getOrUndefined(d))
    }
    return out
  })

describe("RetryPolicy", () => {
  it.effect("never retries permanent errors or invalid responses", () =>
    Effect.gen(function* () {
      expect(yield* delays(RetryPolicy.defaults, new Permanent({ message: "404" }), 1)).toEqual([undefined])
      expect(yield* delays(RetryPolicy.defaults, new InvalidResponse({ message: "bad" }), 1)).toEqual([undefined])
    }))

  it.effect.prop(
    "timeout backoff stays within ±20% of 1 s × 2^n and never exceeds 30 s",
    [fc.integer({ min: 1, max: 12 })],
    ([n]) =>
      Effect.gen(function* () {
        const ds = yield* delays(RetryPolicy.defaults, new AttemptTimeout({ message: "t" }), n)
        ds.forEach((d, i) => {
          const nominal = 1_000 * 2 ** i
          expect(d).toBeDefined()
          expect(d ?? 0).toBeLessThanOrEqual(30_000)
          expect(d ?? 0).toBeGreaterThanOrEqual(Math.min(0.8 * nominal, 30_000) - 1)
          expect(d ?? 0).toBeLessThanOrEqual(1.2 * nominal + 1)
        })
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "a server-provided wait is honoured, never shortened, at most +10%",
    [fc.integer({ min: 0, max: 600_000 })],
    ([ms]) =>
      Effect.gen(function* () {
        const [d] = yield* delays(RetryPolicy.defaults, new RateLimited({ message: "429", retryAfter: Duration.millis(ms) }), 1)
        expect(d ?? -1).toBeGreaterThanOrEqual(ms)
        expect(d ?? -1).toBeLessThanOrEqual(ms * 1.1)
        const [c] = yield* delays(
          RetryPolicy.defaults,
          new CircuitOpen({ key: "k", retryAfter: Duration.millis(ms), message: "open" }),
          1
        )
        expect(c ?? -1).toBeGreaterThanOrEqual(ms)
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect("transient: about 5 s each time", () =>
    Effect.gen(function* () {
      const ds = yield* delays(RetryPolicy.defaults, new Transient({ message: "503" }), 5)
      for (const d of ds) {
        expect(d ?? 0).toBeGreaterThanOrEqual(4_000)
        expect(d ?? 0).toBeLessThanOrEqual(6_000)
      }
    }))

  it.effect("a schedule's own limit ends retries of that class", () =>
    Effect.gen(function* () {
      const policy = RetryPolicy.make({ schedules: { transient: Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(2))) } })
      expect(yield* delays(policy, new Transient({ message: "503" }), 3)).toEqual([1_000, 1_000, undefined])
    }))

  it.effect("retries are counted per class in metrics", () =>
    Effect.gen(function* () {
      const retries = EngineMetrics.forRun("retry-metrics").retryClass("transient")
      const before = (yield* Metric.value(retries)).count
      const h = makeHarness((_, attempt) => ({ latencyMs: 1, outcome: attempt < 3 ? "transient" : "ok" }))
      yield* runVirtual(Engine.run([0], h.task, { name: "retry-metrics" }))
      expect((yield* Metric.value(retries)).count - before).toBe(2)
    }))
})
