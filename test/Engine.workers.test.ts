/**
 * The workers' per-item path (issue 13, W5): workers run interruptibly with no change of
 * interruptibility per item, so what an interruption cuts short is accounted for by the worker's
 * exit. These tests stop runs at the very moment attempts end (a cancel, a deadline, a drain at the
 * instant every call fails), check that every item still gets exactly one outcome, that the metrics
 * count every item of a streamed run (and the in-flight gauge adds up across runs of a processor),
 * and that an attempt without a timeout is never cut.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Fiber, Metric, Stream, TestClock } from "effect"
import { Adjustable, Engine, RetryPolicy, RunControl } from "../src/index.js"
import * as EngineMetrics from "../src/engine/EngineMetrics.js"
import type { ItemResult } from "../src/engine/ItemResult.js"
import { makeHarness, ok } from "./support/harness.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const errorType = (r: ItemResult<unknown> | undefined) => (r !== undefined && r.status !== "succeeded" ? r.error.type : undefined)

/** Every call takes 1 s; first attempts fail (a retry follows, 5 s later by default), retries succeed. */
const failsFirstAfterOneSecond = () =>
  makeHarness((_, attempt) => (attempt === 1 ? { latencyMs: 1_000, outcome: "transient" } : ok(1_000)))

describe("a stop landing as attempts end", () => {
  it.effect("a cancel at the instant every call fails: one result per item, all cancelled, no call left running", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = failsFirstAfterOneSecond()
      const fiber = yield* Effect.fork(Engine.run(range(200), h.task, { maxConcurrent: 20 }, { control }))
      yield* TestClock.adjust("999 millis")
      // The cancel and the 20 failing calls are due at the same instant.
      yield* Effect.fork(Effect.zipRight(Effect.sleep("1 millis"), control.cancel))
      yield* TestClock.adjust("1 millis")
      const results = yield* Fiber.join(fiber)
      expect(results.map((r) => r.index)).toEqual(range(200))
      expect(results.every((r) => r.status === "cancelled")).toBe(true)
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("a deadline at the instant every call fails: one result per item, none retried", () =>
    Effect.gen(function* () {
      const h = failsFirstAfterOneSecond()
      const fiber = yield* Effect.fork(Engine.run(range(200), h.task, { maxConcurrent: 20, deadline: "1 second" }))
      yield* TestClock.adjust("1 second")
      const results = yield* Fiber.join(fiber)
      expect(results.map((r) => r.index)).toEqual(range(200))
      // The first 20 failed with no time left for a retry; the workers took the next 20 at the
      // same instant, and the deadline stopped those and everything after.
      expect(results.slice(0, 20).every((r) => errorType(r) === "upstream_unavailable" && r.attempts === 1)).toBe(true)
      expect(results.slice(20).every((r) => errorType(r) === "deadline_exceeded" && r.attempts <= 1)).toBe(true)
      expect(h.calls.length).toBeLessThanOrEqual(40)
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("a drain at the instant every call fails: each item has a result or is listed unfinished, never both", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = failsFirstAfterOneSecond()
      const fiber = yield* Effect.fork(Engine.runWithSummary(range(200), h.task, { maxConcurrent: 20 }, { control }))
      yield* TestClock.adjust("999 millis")
      yield* Effect.fork(Effect.zipRight(Effect.sleep("1 millis"), control.drain("0 millis")))
      yield* TestClock.adjust("1 millis")
      const { results, summary } = yield* Fiber.join(fiber)
      const withResult = results.flatMap((r, i) => (r === undefined ? [] : [i]))
      const unfinished = summary.unfinished ?? []
      expect([...withResult, ...unfinished].sort((a, b) => a - b)).toEqual(range(200))
      expect(summary.stoppedBy).toBe("drained")
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("interrupting a stream's consumer as calls fail leaves no call running", () =>
    Effect.gen(function* () {
      const h = failsFirstAfterOneSecond()
      const fiber = yield* Effect.fork(Stream.runCollect(Engine.stream(range(200), h.task, { maxConcurrent: 20 })))
      yield* TestClock.adjust("999 millis")
      yield* Effect.fork(Effect.zipRight(Effect.sleep("1 millis"), Fiber.interrupt(fiber)))
      yield* TestClock.adjust("1 millis")
      yield* Fiber.await(fiber)
      expect(h.state.inFlight).toBe(0)
    }))
})

describe("metrics on the per-item path", () => {
  it.effect("a streamed run counts every attempt and its duration, and ends with nothing in flight", () =>
    Effect.gen(function* () {
      const name = "workers-test-metrics"
      const metrics = EngineMetrics.forRun(name)
      const successes = yield* Metric.value(metrics.attemptOutcome("success"))
      const durations = yield* Metric.value(metrics.attemptDuration)
      const out = yield* Stream.runCollect(Engine.stream(range(5_000), (i: number) => Effect.succeed(i), { name, maxConcurrent: 50 }))
      expect(new Set(Chunk.toReadonlyArray(out).map((r) => r.index)).size).toBe(5_000)
      expect((yield* Metric.value(metrics.attemptOutcome("success"))).count - successes.count).toBe(5_000)
      expect((yield* Metric.value(metrics.attemptDuration)).count - durations.count).toBe(5_000)
      expect((yield* Metric.value(metrics.inFlight)).value).toBe(0)
    }))
})

describe("the in-flight gauge", () => {
  it.effect("runs of the same processor add up on it, and leave it at zero", () =>
    Effect.gen(function* () {
      const name = "workers-test-shared-gauge"
      const gauge = EngineMetrics.forRun(name).inFlight
      const h = makeHarness(() => ok(1_000))
      const a = yield* Effect.fork(Engine.run(range(3), h.task, { name, maxConcurrent: 3 }))
      const b = yield* Effect.fork(Engine.run(range(5), h.task, { name, maxConcurrent: 2 }))
      yield* TestClock.adjust("500 millis")
      expect((yield* Metric.value(gauge)).value).toBe(5)
      yield* TestClock.adjust("1 second")
      // Run a is done; run b has its second wave of 2 in flight.
      expect((yield* Metric.value(gauge)).value).toBe(2)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(a)
      yield* Fiber.join(b)
      expect((yield* Metric.value(gauge)).value).toBe(0)
    }))
})

describe("an attempt without a timeout", () => {
  it.effect("Duration.infinity: a call of two hours is not cut", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ok(7_200_000))
      const fiber = yield* Effect.fork(Engine.run(range(3), h.task, { attemptTimeout: Duration.infinity, maxConcurrent: 3 }))
      yield* TestClock.adjust("2 hours")
      const results = yield* Fiber.join(fiber)
      expect(results.map((r) => [r.status, r.attempts, r.durationMs])).toEqual([
        ["succeeded", 1, 7_200_000],
        ["succeeded", 1, 7_200_000],
        ["succeeded", 1, 7_200_000]
      ])
    }))

  it.effect("a timeout set while it runs applies from then on", () =>
    Effect.gen(function* () {
      const timeout = yield* Adjustable.make(Duration.infinity)
      const h = makeHarness(() => ({ latencyMs: 0, outcome: "hang" }))
      const fiber = yield* Effect.fork(Engine.run([0], h.task, { attemptTimeout: timeout, retry: RetryPolicy.make({ maxRetries: 0 }) }))
      yield* TestClock.adjust("1 second")
      yield* timeout.set(Duration.seconds(2))
      yield* TestClock.adjust("2 seconds")
      const [result] = yield* Fiber.join(fiber)
      expect(errorType(result)).toBe("timeout")
      expect(result?.durationMs).toBe(3_000)
    }))
})
