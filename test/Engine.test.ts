import { assert, describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Duration, Effect, Exit, Fiber, Option, RateLimiter, Schedule, Stream, TestClock } from "effect"
import { Adjustable, Budget, CircuitBreaker, Engine, RetryPolicy, RunControl, Transient } from "../src/index.js"
import type { ItemResult } from "../src/engine/ItemResult.js"
import { attemptsOf, makeHarness, ok, runVirtual, type Step } from "./support/harness.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)
const noRetry = RetryPolicy.make({ maxRetries: 0 })
const errorType = (r: ItemResult<unknown> | undefined) => (r !== undefined && r.status !== "succeeded" ? r.error.type : undefined)

describe("run", () => {
  it.effect("returns one result per input, in input order, and never more than maxConcurrent at once", () =>
    Effect.gen(function* () {
      const h = makeHarness((i) => ok(((i * 37) % 11) * 10 + 5))
      const results = yield* runVirtual(Engine.run(range(40), h.task, { maxConcurrent: 4 }))
      expect(results.map((r) => r.index)).toEqual(range(40))
      expect(results.every((r) => r.status === "succeeded" && r.attempts === 1)).toBe(true)
      expect(h.state.peak).toBe(4)
      expect(results[7]).toMatchObject({ status: "succeeded", value: 70 })
    }))

  it.effect("is work-conserving: a slow item does not hold up the others", () =>
    Effect.gen(function* () {
      // Item 0 takes 10 s; with 2 slots the other 9 items (1 s each) all run in the second slot.
      const h = makeHarness((i) => ok(i === 0 ? 10_000 : 1_000))
      yield* runVirtual(Engine.run(range(10), h.task, { maxConcurrent: 2 }))
      const starts = h.calls.map((c) => c.at)
      expect(Math.max(...starts)).toBe(8_000)
    }))

  it.effect("carries ids from idOf", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ok(1))
      const results = yield* runVirtual(Engine.run([5, 6], h.task, {}, { idOf: (item) => `post-${item}` }))
      expect(results.map((r) => r.id)).toEqual(["post-5", "post-6"])
    }))

  it.effect("an empty input completes at once with no results", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ok(1))
      const results = yield* Engine.run([], h.task)
      expect(results).toEqual([])
    }))
})

describe("per-attempt timeout", () => {
  it.effect("interrupts the attempt at the timeout and fires its AbortSignal", () =>
    Effect.gen(function* () {
      const h = makeHarness((i) => (i === 1 ? { latencyMs: 0, outcome: "hang" } : ok(100)))
      const fiber = yield* Effect.fork(Engine.run(range(3), h.task, { attemptTimeout: "2 seconds", retry: noRetry }))
      yield* TestClock.adjust("1999 millis")
      expect(h.state.aborted).toBe(0)
      yield* TestClock.adjust("1 millis")
      const results = yield* Fiber.join(fiber)
      expect(h.state.aborted).toBe(1)
      expect(h.state.inFlight).toBe(0)
      expect(results[1]).toMatchObject({ status: "failed", attempts: 1, durationMs: 2_000 })
      expect(errorType(results[1])).toBe("timeout")
      expect(results[0]?.status).toBe("succeeded")
      expect(results[2]?.status).toBe("succeeded")
    }))

  it.effect("a timed-out worker's slot is refilled", () =>
    Effect.gen(function* () {
      // One slot; item 0 hangs. Items 1 and 2 must still run, right after the timeout.
      const h = makeHarness((i) => (i === 0 ? { latencyMs: 0, outcome: "hang" } : ok(10)))
      const results = yield* runVirtual(
        Engine.run(range(3), h.task, { maxConcurrent: 1, attemptTimeout: "1 second", retry: noRetry })
      )
      expect(results.map((r) => r.status)).toEqual(["failed", "succeeded", "succeeded"])
      expect(attemptsOf(h.calls, 1)[0]?.at).toBe(1_000)
      expect(h.state.peak).toBe(1)
    }))

  it.effect("timeouts are retried with exponential backoff from 1 s, jittered, capped at 30 s", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ({ latencyMs: 0, outcome: "hang" }))
      const retry = RetryPolicy.make({ maxRetries: 7 })
      const [result] = yield* runVirtual(Engine.run([0], h.task, { attemptTimeout: "1 second", retry }))
      const starts = h.calls.map((c) => c.at)
      expect(starts.length).toBe(8)
      const gaps = starts.slice(1).map((t, i) => t - (starts[i] ?? 0) - 1_000)
      const nominal = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
      // ±1 ms: the watchdog sleeps whole milliseconds, so a timeout fires up to 1 ms after a fractional
      // deadline; plus floating-point error on the fractional clock readings (CI once saw a gap of
      // 30001.000000000007 against 30001).
      const slack = 1 + 1e-6
      gaps.forEach((gap, i) => {
        const n = nominal[i] ?? 0
        expect(gap).toBeGreaterThanOrEqual(Math.min(n * 0.8, 30_000) - slack)
        expect(gap).toBeLessThanOrEqual(Math.min(n * 1.2, 30_000) + slack)
      })
      expect(result).toMatchObject({ status: "failed", attempts: 8 })
    }))
})

describe("retry schedules per error class", () => {
  it.effect("rate limited: waits the upstream's Retry-After", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt === 1 ? { latencyMs: 0, outcome: "rate_limited", retryAfterMs: 7_000 } : ok(0)))
      const [result] = yield* runVirtual(Engine.run([0], h.task))
      const second = attemptsOf(h.calls, 0)[1]?.at ?? -1
      expect(second).toBeGreaterThanOrEqual(7_000)
      expect(second).toBeLessThanOrEqual(7_700)
      expect(result).toMatchObject({ status: "succeeded", attempts: 2 })
    }))

  it.effect("rate limited without Retry-After: waits about 60 s", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt === 1 ? { latencyMs: 0, outcome: "rate_limited" } : ok(0)))
      yield* runVirtual(Engine.run([0], h.task))
      const second = attemptsOf(h.calls, 0)[1]?.at ?? -1
      expect(second).toBeGreaterThanOrEqual(48_000)
      expect(second).toBeLessThanOrEqual(72_000)
    }))

  it.effect("transient: waits about 5 s", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt === 1 ? { latencyMs: 100, outcome: "transient" } : ok(0)))
      yield* runVirtual(Engine.run([0], h.task))
      const second = attemptsOf(h.calls, 0)[1]?.at ?? -1
      expect(second).toBeGreaterThanOrEqual(100 + 4_000)
      expect(second).toBeLessThanOrEqual(100 + 6_000)
    }))

  it.effect("permanent errors, invalid responses and skips are attempted once", () =>
    Effect.gen(function* () {
      const outcomes: ReadonlyArray<Step["outcome"]> = ["permanent", "invalid", "skip"]
      const h = makeHarness((i) => ({ latencyMs: 10, outcome: outcomes[i] ?? "ok" }))
      const results = yield* runVirtual(Engine.run(range(3), h.task))
      expect(h.calls.length).toBe(3)
      expect(results.map((r) => r.status)).toEqual(["failed", "failed", "skipped"])
      expect(results.map(errorType)).toEqual(["upstream_rejected", "invalid_response", "skipped"])
      expect(results.map((r) => (r.status === "succeeded" ? undefined : r.error.retryable))).toEqual([false, false, false])
    }))

  it.effect("a defect in the task fails that item as unexpected, not the run", () =>
    Effect.gen(function* () {
      const h = makeHarness((i) => (i === 0 ? { latencyMs: 0, outcome: "defect" } : ok(1)))
      const results = yield* runVirtual(Engine.run(range(2), h.task))
      expect(errorType(results[0])).toBe("unexpected")
      expect(results[1]?.status).toBe("succeeded")
    }))

  it.effect("stops after maxRetries + 1 attempts", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ({ latencyMs: 10, outcome: "transient" }))
      const [result] = yield* runVirtual(Engine.run([0], h.task, { retry: RetryPolicy.make({ maxRetries: 2 }) }))
      expect(result).toMatchObject({ status: "failed", attempts: 3 })
      expect(errorType(result)).toBe("upstream_unavailable")
    }))

  it.effect("a retry waiting for its backoff does not hold a concurrency slot", () =>
    Effect.gen(function* () {
      // One slot. Item 0 fails at t=100 and waits ~5 s; item 1 must start at t=100, not after the retry.
      const h = makeHarness((i, attempt) => (i === 0 && attempt === 1 ? { latencyMs: 100, outcome: "transient" } : ok(1_000)))
      const results = yield* runVirtual(Engine.run(range(2), h.task, { maxConcurrent: 1 }))
      expect(attemptsOf(h.calls, 1)[0]?.at).toBe(100)
      expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded"])
      expect(h.state.peak).toBe(1)
    }))
})

describe("batch deadline", () => {
  it.effect("keeps finished results, interrupts running attempts, marks the rest deadline_exceeded", () =>
    Effect.gen(function* () {
      // 2 slots, 1 s per item, deadline 2.5 s: items 0-3 finish, 4-5 are running, 6-9 never start.
      const h = makeHarness(() => ok(1_000))
      const results = yield* runVirtual(Engine.run(range(10), h.task, { maxConcurrent: 2, deadline: "2500 millis" }))
      expect(results.length).toBe(10)
      expect(results.slice(0, 4).every((r) => r.status === "succeeded")).toBe(true)
      expect(results.slice(4).map(errorType)).toEqual(Array(6).fill("deadline_exceeded"))
      expect(results.slice(4, 6).map((r) => r.attempts)).toEqual([1, 1])
      expect(results.slice(6).map((r) => r.attempts)).toEqual([0, 0, 0, 0])
      expect(h.state.interrupted).toBe(2)
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("does not start a retry whose backoff ends after the deadline", () =>
    Effect.gen(function* () {
      const h = makeHarness(() => ({ latencyMs: 100, outcome: "transient" }))
      const [result] = yield* runVirtual(Engine.run([0], h.task, { deadline: "3 seconds" }))
      expect(h.calls.length).toBe(1)
      expect(result?.status).toBe("failed")
      expect(errorType(result)).toBe("upstream_unavailable")
      assert(result?.status === "failed" && result.error.message.includes("deadline"))
    }))
})

describe("deadline as a fixed moment (deadlineAt)", () => {
  it.effect("the earlier of deadline and deadlineAt applies; finished results are kept", () =>
    Effect.gen(function* () {
      // 2 slots, 1 s per item: at 1.5 s items 0-1 are done, 2-3 running (interrupted), 4-5 never start.
      const h = makeHarness(() => ok(1_000))
      const results = yield* runVirtual(
        Engine.run(range(6), h.task, { maxConcurrent: 2, deadline: "10 seconds", deadlineAt: 1_500 })
      )
      expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "failed", "failed", "failed", "failed"])
      expect(results.slice(2).map(errorType)).toEqual(Array(4).fill("deadline_exceeded"))
      expect(results.slice(2).map((r) => r.attempts)).toEqual([1, 1, 0, 0])
      expect(h.state.interrupted).toBe(2)
    }))

  it.effect("a moment already past (a run resumed after its deadline) starts nothing", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(50_000)
      const h = makeHarness(() => ok(10))
      const { results, summary } = yield* runVirtual(Engine.runWithSummary(range(5), h.task, { deadlineAt: 40_000 }))
      expect(h.calls.length).toBe(0)
      expect(results.map(errorType)).toEqual(Array(5).fill("deadline_exceeded"))
      expect(results.map((r) => r.attempts)).toEqual([0, 0, 0, 0, 0])
      expect(summary.stoppedBy).toBe("deadline")
    }))
})

describe("maxRetryAfter", () => {
  const capped = RetryPolicy.make({ maxRetryAfter: "60 seconds", serverDelayJitter: 0 })

  it.effect("a 429 asking for more than the cap fails at once as rate_limited with retryAfterMs; a shorter one is obeyed", () =>
    Effect.gen(function* () {
      const h = makeHarness((i, attempt) =>
        attempt > 1 ? ok(10) : { latencyMs: 10, outcome: "rate_limited", retryAfterMs: i === 0 ? 600_000 : 30_000 }
      )
      const fiber = yield* Effect.fork(Engine.run([0, 1], h.task, { retry: capped }))
      // Item 0 is over the cap: it ends with its first answer, long before the 600 s it was told.
      yield* TestClock.adjust("1 second")
      expect(attemptsOf(h.calls, 0).length).toBe(1)
      yield* TestClock.adjust("60 seconds")
      const results = yield* Fiber.join(fiber)
      expect(results[0]).toMatchObject({
        status: "failed",
        attempts: 1,
        durationMs: 10,
        error: { type: "rate_limited", retryable: true, retryAfterMs: 600_000 }
      })
      assert(results[0]?.status === "failed" && results[0].error.message.includes("600 s"))
      expect(results[1]).toMatchObject({ status: "succeeded", attempts: 2 })
      expect(attemptsOf(h.calls, 1).map((c) => c.at)).toEqual([0, 30_010])
    }))

  it.effect("a 503 with a Retry-After over the cap ends at once too, carrying the wait", () =>
    Effect.gen(function* () {
      const task = () => Effect.fail(new Transient({ message: "503", status: 503, retryAfter: Duration.minutes(5) }))
      const [result] = yield* runVirtual(Engine.run([0], task, { retry: capped }))
      expect(result).toMatchObject({ status: "failed", attempts: 1, error: { type: "upstream_unavailable", retryAfterMs: 300_000 } })
    }))

  it.effect("without a cap (the library default) a long Retry-After is obeyed", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt > 1 ? ok(10) : { latencyMs: 10, outcome: "rate_limited", retryAfterMs: 600_000 }))
      const [result] = yield* runVirtual(Engine.run([0], h.task, { retry: RetryPolicy.make({ serverDelayJitter: 0 }) }))
      expect(result).toMatchObject({ status: "succeeded", attempts: 2 })
      expect(h.calls.map((c) => c.at)).toEqual([0, 600_010])
    }))
})

describe("attempts count calls made", () => {
  it.effect("a task calling two upstreams through guard counts each guarded call that went out, none the breaker turned away", () =>
    Effect.gen(function* () {
      // Like the intraday processor: a screen call that works, then a news call whose connection is
      // reset every time; the news breaker opens after 3 failures.
      const news = yield* CircuitBreaker.make("news")
      let screenCalls = 0
      let newsCalls = 0
      const screen = Effect.sync(() => {
        screenCalls++
      })
      const search = Effect.suspend(() => {
        newsCalls++
        return Effect.fail(new Transient({ message: "news search: connection failed" }))
      })
      const fiber = yield* Effect.fork(
        Engine.run(
          [0],
          (_, ctx) => Effect.zipRight(ctx.guard({})(screen), ctx.guard({ breaker: news })(search)),
          { retry: RetryPolicy.make({ schedules: { transient: Schedule.spaced("10 millis") } }) }
        )
      )
      yield* TestClock.adjust("1 second")
      const [result] = yield* Fiber.join(fiber)
      // 4 tries: screen ×4, news ×3 (the 4th is turned away by the open breaker) = 7 calls.
      expect([screenCalls, newsCalls]).toEqual([4, 3])
      expect(result).toMatchObject({ status: "failed", attempts: 7, error: { type: "circuit_open" } })
    }))

  it.effect("a task without guard counts one call per run; the attempt number it sees counts its runs", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt < 3 ? { latencyMs: 10, outcome: "transient" } : ok(10)))
      const [result] = yield* runVirtual(
        Engine.run([0], h.task, { retry: RetryPolicy.make({ schedules: { transient: Schedule.spaced("10 millis") } }) })
      )
      expect(result).toMatchObject({ status: "succeeded", attempts: 3 })
      expect(h.calls.map((c) => c.attempt)).toEqual([1, 2, 3])
    }))
})

describe("circuit breaker in a run", () => {
  it.effect("opens after 3 consecutive transient failures; later items fail fast without a call", () =>
    Effect.gen(function* () {
      const breaker = yield* CircuitBreaker.make("forum")
      const h = makeHarness(() => ({ latencyMs: 10, outcome: "transient" }))
      const results = yield* runVirtual(
        Engine.run(range(6), h.task, { maxConcurrent: 1, breaker, retry: noRetry })
      )
      expect(h.calls.length).toBe(3)
      expect(results.slice(3).map(errorType)).toEqual(["circuit_open", "circuit_open", "circuit_open"])
      expect(results.slice(3).map((r) => r.attempts)).toEqual([0, 0, 0])
      expect((yield* breaker.snapshot).status).toBe("open")
    }))

  it.effect("permanent errors and rate limits do not trip it", () =>
    Effect.gen(function* () {
      const breaker = yield* CircuitBreaker.make("llm")
      const h = makeHarness((i) => ({ latencyMs: 10, outcome: i % 2 === 0 ? "permanent" : "rate_limited", retryAfterMs: 10 }))
      yield* runVirtual(Engine.run(range(8), h.task, { maxConcurrent: 1, breaker, retry: noRetry }))
      expect(h.calls.length).toBe(8)
      expect((yield* breaker.snapshot).status).toBe("closed")
    }))

  it.effect("with whenBreakerOpen: wait, items wait for recovery and a probe closes it", () =>
    Effect.gen(function* () {
      const breaker = yield* CircuitBreaker.make("market", { recoveryTimeout: "10 seconds" })
      // The first 3 calls fail; the upstream is healthy afterwards.
      let n = 0
      const h = makeHarness(() => (n++ < 3 ? { latencyMs: 10, outcome: "transient" } : ok(10)))
      const results = yield* runVirtual(
        Engine.run(range(5), h.task, {
          maxConcurrent: 1,
          breaker,
          whenBreakerOpen: "wait",
          retry: RetryPolicy.make({ maxRetries: 5, schedules: { transient: Schedule.spaced("1 millis") } })
        })
      )
      expect(results.every((r) => r.status === "succeeded")).toBe(true)
      const afterOpen = h.calls.slice(3)
      expect(afterOpen[0]?.at ?? 0).toBeGreaterThanOrEqual(10_030)
      expect((yield* breaker.snapshot).status).toBe("closed")
    }))
})

describe("cancellation", () => {
  it.effect("cancel interrupts in-flight calls, keeps finished results and marks the rest cancelled", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness(() => ok(1_000))
      const fiber = yield* Effect.fork(Engine.run(range(6), h.task, { maxConcurrent: 2 }, { control }))
      yield* TestClock.adjust("1500 millis")
      yield* control.cancel
      const results = yield* Fiber.join(fiber)
      expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "cancelled", "cancelled", "cancelled", "cancelled"])
      expect(results.slice(2, 4).map((r) => r.attempts)).toEqual([1, 1])
      expect(h.state.interrupted).toBe(2)
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("interrupting the run interrupts every in-flight call and releases breaker probes", () =>
    Effect.gen(function* () {
      const breaker = yield* CircuitBreaker.make("news", { recoveryTimeout: "1 second" })
      // Items 0-2 fail once (opening the breaker); every other call hangs, so the probe sent after
      // the recovery time stays in flight.
      const h = makeHarness((i, attempt) =>
        i < 3 && attempt === 1 ? { latencyMs: 10, outcome: "transient" } : { latencyMs: 0, outcome: "hang" }
      )
      const fiber = yield* Effect.fork(
        Engine.run(range(8), h.task, {
          maxConcurrent: 3,
          breaker,
          whenBreakerOpen: "wait",
          attemptTimeout: "1 hour",
          retry: RetryPolicy.make({ maxRetries: 10, schedules: { transient: Schedule.spaced("1 millis") } })
        })
      )
      yield* TestClock.adjust("5 seconds")
      expect((yield* breaker.snapshot).probesInFlight).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(h.state.inFlight).toBe(0)
      expect((yield* breaker.snapshot).probesInFlight).toBe(0)
    }))
})

describe("drain", () => {
  it.effect("calls in flight finish within the grace period and are delivered; nothing else starts or gets a result", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness(() => ok(1_000))
      const fiber = yield* Effect.fork(Engine.runWithSummary(range(6), h.task, { maxConcurrent: 2 }, { control }))
      yield* TestClock.adjust("1500 millis")
      yield* control.drain("10 seconds")
      yield* TestClock.adjust("500 millis")
      const { results, summary } = yield* Fiber.join(fiber)
      expect(results.map((r) => r?.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"])
      expect(summary).toMatchObject({ stoppedBy: "drained", unfinished: [4, 5], completed: 4, cancelled: 0, durationMs: 2_000 })
      expect(h.calls.map((c) => c.index)).toEqual([0, 1, 2, 3])
      expect(h.state.interrupted).toBe(0)
    }))

  it.effect("a retry waiting for its backoff does not start, even when the backoff ends within the grace period", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness((i, attempt) => (i === 0 && attempt === 1 ? { latencyMs: 10, outcome: "transient" } : ok(20_000)))
      const retry = RetryPolicy.make({ maxRetries: 3, schedules: { transient: Schedule.spaced("1 second") } })
      const fiber = yield* Effect.fork(
        Engine.runWithSummary(range(4), h.task, { maxConcurrent: 2, attemptTimeout: "1 minute", retry }, { control })
      )
      yield* TestClock.adjust("100 millis")
      // Item 0 failed and waits for its retry; item 1 calls (until 20 s); item 2 started in item 0's slot.
      yield* control.drain("30 seconds")
      yield* TestClock.adjust("25 seconds")
      const { results, summary } = yield* Fiber.join(fiber)
      expect(attemptsOf(h.calls, 0)).toHaveLength(1)
      expect(results[1]?.status).toBe("succeeded")
      expect(results[2]?.status).toBe("succeeded")
      expect(results[0]).toBeUndefined()
      expect(summary).toMatchObject({ stoppedBy: "drained", unfinished: [0, 3], completed: 2 })
    }))

  it.effect("a call waiting for admission by a budget never starts; its item is left over", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const budget = yield* Budget.make({ key: "drain-test", ceiling: 1, adaptive: false })
      const h = makeHarness(() => ok(5_000))
      const fiber = yield* Effect.fork(Engine.runWithSummary(range(3), h.task, { maxConcurrent: 3, budget }, { control }))
      yield* TestClock.adjust("1 second")
      yield* control.drain("1 minute")
      yield* TestClock.adjust("4 seconds")
      const { results, summary } = yield* Fiber.join(fiber)
      expect(h.calls.map((c) => c.index)).toEqual([0])
      expect(results[0]?.status).toBe("succeeded")
      expect(summary).toMatchObject({ stoppedBy: "drained", unfinished: [1, 2], completed: 1, durationMs: 5_000 })
      expect((yield* budget.snapshot).inFlight).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("an attempt let through by the rate limiter after the drain began does not call", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const rateLimiter = yield* RateLimiter.make({ limit: 1, interval: "2 seconds", algorithm: "fixed-window" })
      const h = makeHarness(() => ok(5_000))
      const fiber = yield* Effect.fork(Engine.runWithSummary(range(3), h.task, { maxConcurrent: 2, rateLimiter }, { control }))
      yield* TestClock.adjust("1 second")
      yield* control.drain("1 minute")
      yield* TestClock.adjust("4 seconds")
      const { results, summary } = yield* Fiber.join(fiber)
      expect(h.calls.map((c) => c.index)).toEqual([0])
      expect(results[0]?.status).toBe("succeeded")
      expect(summary).toMatchObject({ stoppedBy: "drained", unfinished: [1, 2], completed: 1, durationMs: 5_000 })
    }).pipe(Effect.scoped))

  it.effect("past the grace period what still runs is interrupted and reported unfinished, not cancelled", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness((i) => (i === 1 ? { latencyMs: 0, outcome: "hang" } : ok(1_000)))
      const fiber = yield* Effect.fork(
        Engine.runWithSummary(range(5), h.task, { maxConcurrent: 2, attemptTimeout: "1 hour" }, { control })
      )
      yield* TestClock.adjust("500 millis")
      yield* control.drain("2 seconds")
      yield* TestClock.adjust("1999 millis")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const { results, summary } = yield* Fiber.join(fiber)
      expect(results[0]?.status).toBe("succeeded")
      expect(results[1]).toBeUndefined()
      expect(summary).toMatchObject({ stoppedBy: "drained", unfinished: [1, 2, 3, 4], completed: 1, cancelled: 0 })
      expect(h.state.interrupted).toBe(1)
      expect(h.state.inFlight).toBe(0)
    }))

  it.effect("a drain before the run starts calls nothing; after the run ended it does nothing", () =>
    Effect.gen(function* () {
      const early = yield* RunControl.make
      yield* early.drain("1 second")
      const h = makeHarness(() => ok(10))
      const before = yield* Engine.runWithSummary(range(3), h.task, {}, { control: early })
      expect(h.calls).toHaveLength(0)
      expect(before.summary).toMatchObject({ stoppedBy: "drained", unfinished: [0, 1, 2], completed: 0 })

      const late = yield* RunControl.make
      const after = yield* runVirtual(Engine.runWithSummary(range(3), h.task, {}, { control: late }))
      yield* late.drain("1 second")
      expect(after.summary.stoppedBy).toBe("completed")
      expect(after.summary.unfinished).toBeUndefined()
      expect(after.results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"])
    }))

  it.effect("cancel during the grace period still cancels: every unfinished item ends cancelled", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness((i) => (i === 1 ? { latencyMs: 0, outcome: "hang" } : ok(1_000)))
      const fiber = yield* Effect.fork(
        Engine.runWithSummary(range(5), h.task, { maxConcurrent: 2, attemptTimeout: "1 hour" }, { control })
      )
      yield* TestClock.adjust("500 millis")
      yield* control.drain("1 minute")
      yield* TestClock.adjust("1 second")
      yield* control.cancel
      const { results, summary } = yield* Fiber.join(fiber)
      expect(results.map((r) => r.status)).toEqual(["succeeded", "cancelled", "cancelled", "cancelled", "cancelled"])
      expect(summary.stoppedBy).toBe("cancelled")
      expect(summary.unfinished).toBeUndefined()
    }))

  it.effect("events end with RunCompleted stoppedBy drained; a stream input is not read further", () =>
    Effect.gen(function* () {
      const control = yield* RunControl.make
      const h = makeHarness(() => ok(1_000))
      const fiber = yield* Effect.fork(
        Stream.runCollect(Engine.events(Stream.fromIterable(range(6)), h.task, { maxConcurrent: 2 }, { control }))
      )
      yield* TestClock.adjust("500 millis")
      yield* control.drain("10 seconds")
      yield* TestClock.adjust("1 second")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      const last = events[events.length - 1]
      assert(last?._tag === "RunCompleted")
      expect(last.summary).toMatchObject({ stoppedBy: "drained", completed: 2, unfinished: [] })
      expect(events.filter((e) => e._tag === "ItemFinished")).toHaveLength(2)
    }))
})

describe("resizing", () => {
  it.effect("maxConcurrent can be raised and lowered while the run is in progress", () =>
    Effect.gen(function* () {
      const limit = yield* Adjustable.make(2)
      const h = makeHarness(() => ok(1_000))
      const fiber = yield* Effect.fork(Engine.run(range(40), h.task, { maxConcurrent: limit }))
      yield* TestClock.adjust("1500 millis")
      expect(h.state.peak).toBe(2)
      yield* limit.set(6)
      yield* TestClock.adjust("1 millis")
      expect(h.state.inFlight).toBe(6)
      yield* limit.set(1)
      yield* TestClock.adjust("1 second")
      h.state.peak = h.state.inFlight
      yield* TestClock.adjust("5 seconds")
      expect(h.state.peak).toBe(1)
      yield* TestClock.adjust("1 hour")
      const results = yield* Fiber.join(fiber)
      expect(results.every((r) => r.status === "succeeded")).toBe(true)
    }))

  it.effect("a shorter attempt timeout applies to attempts already running", () =>
    Effect.gen(function* () {
      const timeout = yield* Adjustable.make(Duration.seconds(30))
      const h = makeHarness(() => ({ latencyMs: 0, outcome: "hang" }))
      const fiber = yield* Effect.fork(Engine.run([0], h.task, { attemptTimeout: timeout, retry: noRetry }))
      yield* TestClock.adjust("1 second")
      yield* timeout.set(Duration.seconds(2))
      yield* TestClock.adjust("1 second")
      const [result] = yield* Fiber.join(fiber)
      expect(errorType(result)).toBe("timeout")
      expect(result?.durationMs).toBe(2_000)
    }))
})

describe("streaming", () => {
  it.effect("emits results as they complete", () =>
    Effect.gen(function* () {
      const h = makeHarness((i) => ok((5 - i) * 100))
      const out = yield* runVirtual(Stream.runCollect(Engine.stream(range(5), h.task, { maxConcurrent: 5 })))
      expect(Chunk.toReadonlyArray(out).map((r) => r.index)).toEqual([4, 3, 2, 1, 0])
    }))

  it.effect("pulls a Stream input only as fast as results are consumed", () =>
    Effect.gen(function* () {
      let pulled = 0
      const input = Stream.fromIterable(range(10_000)).pipe(
        Stream.rechunk(1),
        Stream.tap(() => Effect.sync(() => pulled++))
      )
      const h = makeHarness(() => ok(1))
      const taken = yield* runVirtual(
        Engine.stream(input, h.task, { maxConcurrent: 4 }).pipe(Stream.take(20), Stream.runCollect)
      )
      expect(Chunk.size(taken)).toBe(20)
      expect(pulled).toBeLessThan(100)
    }))

  it.effect("a consumer slower than immediate tasks still gets every result exactly once", () =>
    Effect.gen(function* () {
      // Results go straight into the stream's buffer while it has room, through the outbox when it
      // is full; the consumer yields on every result so that both happen many times.
      const n = 3_000
      const out = yield* Engine.stream(range(n), (i) => Effect.succeed(i), { maxConcurrent: 20 }).pipe(
        Stream.tap(() => Effect.yieldNow()),
        Stream.runCollect
      )
      const results = Chunk.toReadonlyArray(out)
      expect(results.length).toBe(n)
      expect(results.every((r) => r.status === "succeeded" && r.value === r.index)).toBe(true)
      expect(new Set(results.map((r) => r.index)).size).toBe(n)
    }))

  it.effect("a failing input stream fails the output stream after the items before it", () =>
    Effect.gen(function* () {
      const input = Stream.concat(Stream.fromIterable([1, 2]), Stream.fail("input broke" as const))
      const h = makeHarness(() => ok(1))
      const exit = yield* runVirtual(Effect.exit(Stream.runCollect(Engine.stream(input, h.task))))
      expect(exit).toEqual(Exit.fail("input broke"))
    }))

  it.effect("events: counts, ETA, breaker changes, and RunCompleted last", () =>
    Effect.gen(function* () {
      const breaker = yield* CircuitBreaker.make("events")
      const h = makeHarness((i) => (i < 3 ? { latencyMs: 10, outcome: "transient" } : ok(10)))
      const events = Chunk.toReadonlyArray(
        yield* runVirtual(
          Stream.runCollect(Engine.events(range(6), h.task, { maxConcurrent: 1, breaker, retry: noRetry }))
        )
      )
      expect(events[0]?._tag).toBe("RunStarted")
      const last = events[events.length - 1]
      assert(last?._tag === "RunCompleted")
      expect(last.summary).toMatchObject({ total: 6, completed: 6, failed: 6, stoppedBy: "completed" })
      const finished = events.filter((e) => e._tag === "ItemFinished")
      expect(finished.length).toBe(6)
      const lastFinished = finished[finished.length - 1]
      assert(lastFinished?._tag === "ItemFinished")
      expect(lastFinished.counts.completed).toBe(6)
      expect(lastFinished.etaMs).toBe(0)
      expect(events.some((e) => e._tag === "BreakerChanged" && e.transition.to === "open")).toBe(true)
      // Items turned away by the open breaker never start a call.
      expect(events.filter((e) => e._tag === "ItemStarted").length).toBe(h.calls.length)
      expect(h.calls.length).toBe(3)
    }))
})

describe("AbortSignal reaches promise-based calls", () => {
  it.effect("Effect.tryPromise gets an aborted signal when the attempt times out", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<AbortSignal>()
      const task = () =>
        Effect.flatMap(
          Effect.tryPromise({
            try: (signal) => {
              Deferred.unsafeDone(seen, Effect.succeed(signal))
              return new Promise<number>(() => {})
            },
            catch: () => new Transient({ message: "fetch failed" })
          }),
          () => Effect.succeed(1)
        )
      const fiber = yield* Effect.fork(Engine.run([0], task, { attemptTimeout: "1 second", retry: noRetry }))
      const signal = yield* Deferred.await(seen)
      expect(signal.aborted).toBe(false)
      yield* TestClock.adjust("1 second")
      const [result] = yield* Fiber.join(fiber)
      expect(signal.aborted).toBe(true)
      expect(errorType(result)).toBe("timeout")
    }))
})

describe("result shape", () => {
  it.effect("durationMs spans from the first attempt to the outcome, including retry waits", () =>
    Effect.gen(function* () {
      const h = makeHarness((_, attempt) => (attempt === 1 ? { latencyMs: 100, outcome: "transient" } : ok(200)))
      const [result] = yield* runVirtual(
        Engine.run([0], h.task, { retry: RetryPolicy.make({ schedules: { transient: Schedule.spaced("1 second") } }) })
      )
      expect(result).toMatchObject({ status: "succeeded", attempts: 2, durationMs: 1_300 })
      expect(Option.some(result?.index)).toEqual(Option.some(0))
    }))
})

describe("odd tasks", () => {
  it.effect("a task that interrupts itself fails that item as unexpected, once", () =>
    Effect.gen(function* () {
      let calls = 0
      const results = yield* runVirtual(
        Engine.run([0, 1], (i) => (i === 0 ? Effect.sync(() => calls++).pipe(Effect.zipRight(Effect.interrupt)) : Effect.succeed(i)))
      )
      expect(calls).toBe(1)
      expect(errorType(results[0])).toBe("unexpected")
      expect(results[1]?.status).toBe("succeeded")
    }))
})
