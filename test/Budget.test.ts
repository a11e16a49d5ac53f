/**
 * Upstream budgets under the TestClock: the ceiling, fair share and priority, the shared cooldown,
 * the request rate, stopping a tenant, interruption, and the adaptive algorithms; properties over
 * random interleavings of several runs sharing one budget.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, TestClock } from "effect"
import * as fc from "effect/FastCheck"
import { AttemptTimeout, Budget, Engine, LimitAlgorithm, RateLimited, RetryPolicy, Transient } from "../src/index.js"

const settle = Effect.yieldNow().pipe(Effect.repeatN(20))

/** A call that records how many run at once on `state`. */
const tracked = (state: { inFlight: number; peak: number }, ms: number) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      state.inFlight++
      state.peak = Math.max(state.peak, state.inFlight)
    }),
    () => Effect.sleep(Duration.millis(ms)),
    () => Effect.sync(() => void state.inFlight--)
  )

describe("Budget", () => {
  it.scoped("calls in flight never exceed the ceiling, over every tenant", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 2, adaptive: false })
      const state = { inFlight: 0, peak: 0 }
      const a = Budget.tenant("a")
      const b = Budget.tenant("b")
      const fibers = yield* Effect.forEach([a, a, a, b, b], (t) => Effect.fork(budget.admit(t)(tracked(state, 100))))
      yield* settle
      expect((yield* budget.snapshot).inFlight).toBe(2)
      expect((yield* budget.snapshot).waiting).toBe(3)
      expect((yield* budget.snapshot).waitingTenants).toBe(2)
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(fibers)
      expect(state.peak).toBe(2)
      const after = yield* budget.snapshot
      expect(after.inFlight).toBe(0)
      expect(after.waiting).toBe(0)
    }))

  it.scoped("permits go round-robin between tenants: a small job is not queued behind a big one", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 1, adaptive: false })
      const order: Array<string> = []
      const call = (name: string) => Effect.zipRight(Effect.sync(() => order.push(name)), Effect.sleep("10 millis"))
      const big = Budget.tenant("big")
      const small = Budget.tenant("small")
      const bigs = yield* Effect.forEach([1, 2, 3, 4, 5, 6], (n) => Effect.fork(budget.admit(big)(call(`big${n}`))))
      yield* settle
      const smalls = yield* Effect.forEach([1, 2], (n) => Effect.fork(budget.admit(small)(call(`small${n}`))))
      const fibers = [...bigs, ...smalls]
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(fibers)
      expect(order).toEqual(["big1", "big2", "small1", "big3", "small2", "big4", "big5", "big6"])
    }))

  it.scoped("higher priority first, round-robin within a level", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 1, adaptive: false })
      const order: Array<string> = []
      const call = (name: string) => Effect.zipRight(Effect.sync(() => order.push(name)), Effect.sleep("10 millis"))
      const low = Budget.tenant("low", "low")
      const normal = Budget.tenant("normal")
      const high = Budget.tenant("high", "high")
      const fibers = yield* Effect.forEach(
        [
          [low, "low1"],
          [low, "low2"],
          [normal, "normal1"],
          [normal, "normal2"],
          [high, "high1"],
          [high, "high2"]
        ] as const,
        ([t, name]) => Effect.fork(budget.admit(t)(call(name)))
      )
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(fibers)
      // low1 was admitted at once (nobody waited); the rest by level.
      expect(order).toEqual(["low1", "high1", "high2", "normal1", "normal2", "low2"])
    }))

  it.scoped("a 429 with Retry-After pauses admission for everyone until then; calls in flight finish", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 4, adaptive: false, cooldownJitter: 0 })
      const started: Array<[string, number]> = []
      const at = (name: string) =>
        Effect.flatMap(TestClock.currentTimeMillis, (now) => Effect.sync(() => started.push([name, now])))
      const t = Budget.tenant("a")
      const other = Budget.tenant("b")
      const slow = yield* Effect.fork(budget.admit(t)(Effect.zipRight(at("slow"), Effect.sleep("500 millis"))))
      const throttled = yield* Effect.fork(
        budget.admit(t)(
          Effect.zipRight(at("throttled"), Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.seconds(2) })))
        )
      )
      yield* settle
      expect((yield* Effect.flip(Fiber.join(throttled)))._tag).toBe("RateLimited")
      const snap = yield* budget.snapshot
      expect(snap.cooldownUntil).toBe(2_000)
      expect(snap.throttled).toBe(1)
      const later = yield* Effect.forEach(["x", "y"], (n) => Effect.fork(budget.admit(other)(at(n))))
      yield* TestClock.adjust("1999 millis")
      expect(started.map(([n]) => n)).toEqual(["slow", "throttled"])
      yield* TestClock.adjust("101 millis")
      yield* Fiber.join(slow)
      yield* Fiber.joinAll(later)
      expect(started.filter(([n]) => n === "x" || n === "y").map(([, t]) => t >= 2_000)).toEqual([true, true])
      expect((yield* budget.snapshot).cooldowns).toBe(1)
    }))

  it.scoped("a 503 with Retry-After pauses admission too; one without does not", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 4, adaptive: false, cooldownJitter: 0 })
      const t = Budget.tenant("a")
      yield* Effect.flip(budget.admit(t)(Effect.fail(new Transient({ message: "503", status: 503 }))))
      expect((yield* budget.snapshot).cooldownUntil).toBeUndefined()
      yield* Effect.flip(budget.admit(t)(Effect.fail(new Transient({ message: "503", status: 503, retryAfter: Duration.seconds(1) }))))
      expect((yield* budget.snapshot).cooldownUntil).toBe(1_000)
    }))

  it.scoped("a request rate spaces the starts (bursting up to the rate)", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 10, adaptive: false, rate: { limit: 2, perMs: 1_000 } })
      const starts: Array<number> = []
      const t = Budget.tenant("a")
      const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], () =>
        Effect.fork(budget.admit(t)(Effect.flatMap(TestClock.currentTimeMillis, (now) => Effect.sync(() => starts.push(now)))))
      )
      yield* settle
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.joinAll(fibers)
      expect(starts).toEqual([0, 0, 500, 1_000, 1_500])
    }))

  it.scoped("stopping a tenant: its waiters never start and hold nothing; its calls in flight finish", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 1, adaptive: false })
      const t = Budget.tenant("draining")
      const other = Budget.tenant("other")
      const ran: Array<string> = []
      const call = (n: string) => Effect.zipRight(Effect.sleep("100 millis"), Effect.sync(() => ran.push(n)))
      const first = yield* Effect.fork(budget.admit(t)(call("first")))
      const second = yield* Effect.fork(budget.admit(t)(call("second")))
      const third = yield* Effect.fork(budget.admit(other)(call("other")))
      yield* settle
      yield* Budget.stop(t)
      const idle = yield* Effect.fork(Budget.awaitIdle(t))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(first)
      yield* Fiber.join(third)
      yield* Fiber.join(idle)
      expect(ran).toEqual(["first", "other"])
      expect(second.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(second)
      const snap = yield* budget.snapshot
      expect([snap.inFlight, snap.waiting]).toEqual([0, 0])
    }))

  it.scoped("a share (this process's part of a cluster-wide ceiling) bounds admission, 0 included; a blocked call asks for more", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "t", ceiling: 4, adaptive: false })
      let asked = 0
      budget.onDemand(() => void asked++)
      yield* budget.update({ share: 0 })
      const state = { inFlight: 0, peak: 0 }
      const t = Budget.tenant("a")
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(budget.admit(t)(tracked(state, 100))))
      yield* settle
      expect(state.inFlight).toBe(0)
      expect(asked).toBeGreaterThan(0)
      expect(budget.demand()).toBe(3)
      yield* budget.update({ share: 2 })
      yield* settle
      expect(state.inFlight).toBe(2)
      expect((yield* budget.snapshot).share).toBe(2)
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(fibers)
      expect(state.peak).toBe(2)
      yield* budget.update({ share: null })
      expect((yield* budget.snapshot).limit).toBe(4)
    }))

  it.scoped("a passive budget only admits: a 429 neither pauses it nor lowers its limit", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "job", ceiling: 3, passive: true })
      const t = Budget.tenant("a")
      yield* Effect.flip(budget.admit(t)(Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.seconds(5) }))))
      const snap = yield* budget.snapshot
      expect([snap.limit, snap.cooldownUntil, snap.throttled, snap.algorithm]).toEqual([3, undefined, 0, "fixed"])
    }))

  it.scoped("a drain is idle once no upstream call is in flight, though an attempt still holds a passive (job) permit", () =>
    Effect.gen(function* () {
      const job = yield* Budget.make({ key: "job", ceiling: 2, passive: true })
      const upstream = yield* Budget.make({ key: "up", ceiling: 1, adaptive: false })
      const t = Budget.tenant("run")
      const calling = yield* Effect.fork(job.admit(t)(upstream.admit(t)(Effect.sleep("100 millis"))))
      const waiting = yield* Effect.fork(job.admit(t)(upstream.admit(t)(Effect.sleep("100 millis"))))
      yield* settle
      expect(t.calling).toBe(1)
      yield* Budget.stop(t)
      const idle = yield* Effect.fork(Budget.awaitIdle(t))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(calling)
      yield* Fiber.join(idle)
      expect(t.calling).toBe(0)
      yield* Fiber.interrupt(waiting)
      expect([job.inFlight(), upstream.inFlight()]).toEqual([0, 0])
    }))

  it.effect("waiting for admission is not part of the attempt's timeout, nor in flight", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const budget = yield* Budget.make({ key: "t", ceiling: 1, adaptive: false })
        const fiber = yield* Effect.fork(
          Engine.runWithSummary([1, 2, 3], () => Effect.sleep("800 millis"), { maxConcurrent: 3, attemptTimeout: "1 second", budget })
        )
        yield* settle
        yield* TestClock.adjust("10 seconds")
        const { results } = yield* Fiber.join(fiber)
        expect(results.map((r) => [r.status, r.attempts])).toEqual([
          ["succeeded", 1],
          ["succeeded", 1],
          ["succeeded", 1]
        ])
      })
    ))

  it.effect("a guard inside the task pauses the attempt's clock while it waits", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const budget = yield* Budget.make({ key: "t", ceiling: 1, adaptive: false })
        const fiber = yield* Effect.fork(
          Engine.run(
            [1, 2, 3],
            (_, ctx) => Effect.zipRight(Effect.sleep("300 millis"), ctx.guard({ budget })(Effect.sleep("600 millis"))),
            { maxConcurrent: 3, attemptTimeout: "1 second" }
          )
        )
        yield* settle
        yield* TestClock.adjust("10 seconds")
        const results = yield* Fiber.join(fiber)
        expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"])
      })
    ))

  it.effect("rate-limited items retry when the shared pause ends, not on their own clocks", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const budget = yield* Budget.make({ key: "t", ceiling: 4, adaptive: false, cooldownJitter: 0 })
        const starts: Array<[number, number]> = []
        let refused = false
        const fiber = yield* Effect.fork(
          Engine.run(
            [0, 1],
            (i, ctx) =>
              Effect.flatMap(TestClock.currentTimeMillis, (now) => {
                starts.push([i, now])
                if (ctx.attempt === 1 && i === 0 && !refused) {
                  refused = true
                  return Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.seconds(3) }))
                }
                return Effect.sleep("10 millis")
              }),
            { maxConcurrent: 2, budget, retry: RetryPolicy.make({ serverDelayJitter: 0.5 }) }
          )
        )
        yield* settle
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(fiber)
        // Everyone waited for the pause: nothing started in (0, 3000); the retry came at exactly 3 s.
        expect(starts.filter(([, t]) => t > 0 && t < 3_000)).toEqual([])
        expect(starts.filter(([i]) => i === 0).map(([, t]) => t)).toEqual([0, 3_000])
      })
    ))
})

describe("a pause longer than maxRetryAfter", () => {
  const capped = RetryPolicy.make({ maxRetryAfter: "60 seconds", serverDelayJitter: 0 })

  it.scoped("admit with maxCooldownMs: turned away at once when the pause left is longer, waits it out when shorter", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "up", ceiling: 4, adaptive: false, cooldownJitter: 0 })
      const t = Budget.tenant("a")
      // (Scaled down — the budget re-checks a pause every 100 ms of virtual time.)
      yield* budget.cooldown(9_000)
      const refused = yield* Effect.flip(budget.admit(t, { maxCooldownMs: 6_000 })(Effect.succeed("called")))
      expect(refused._tag).toBe("RateLimited")
      expect(refused._tag === "RateLimited" && refused.retryAfter !== undefined && Duration.toMillis(refused.retryAfter)).toBe(9_000)
      // 3 s later the 6 s left are within the cap: this call waits for the end of the pause.
      yield* TestClock.adjust("3 seconds")
      const waiting = yield* Effect.fork(budget.admit(t, { maxCooldownMs: 6_000 })(TestClock.currentTimeMillis))
      yield* settle
      yield* TestClock.adjust("6 seconds")
      expect(yield* Fiber.join(waiting)).toBe(9_000)
    }))

  it.scoped("a cooldown that begins while calls wait turns away those with a shorter cap and leaves the rest waiting", () =>
    Effect.gen(function* () {
      const budget = yield* Budget.make({ key: "up", ceiling: 1, adaptive: false, cooldownJitter: 0 })
      const t = Budget.tenant("a")
      const first = yield* Effect.fork(
        budget.admit(t)(Effect.zipRight(Effect.sleep("100 millis"), Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.seconds(6) }))))
      )
      yield* settle
      const cappedWaiter = yield* Effect.fork(Effect.either(budget.admit(t, { maxCooldownMs: 1_000 })(Effect.succeed("called"))))
      const patientWaiter = yield* Effect.fork(budget.admit(t)(TestClock.currentTimeMillis))
      yield* settle
      expect((yield* budget.snapshot).waiting).toBe(2)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.await(first)
      const turnedAway = yield* Fiber.join(cappedWaiter)
      expect(turnedAway._tag === "Left" && turnedAway.left.retryAfter !== undefined && Duration.toMillis(turnedAway.left.retryAfter)).toBe(6_000)
      // Nothing held, the uncapped call still waits for the end of the pause.
      expect((yield* budget.snapshot).waiting).toBe(1)
      yield* TestClock.adjust("6 seconds")
      expect(yield* Fiber.join(patientWaiter)).toBe(6_100)
      expect(budget.inFlight()).toBe(0)
    }))

  it.effect("a 429 asking for 10 minutes: the run ends within milliseconds — the item that got it and every item waiting at the budget fail rate_limited with retryAfterMs, none calls during the pause", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const budget = yield* Budget.make({ key: "up", ceiling: 1, adaptive: false, cooldownJitter: 0 })
        const calls: Array<[number, number]> = []
        const task = (i: number) =>
          Effect.flatMap(TestClock.currentTimeMillis, (now) => {
            calls.push([i, now])
            return Effect.zipRight(
              Effect.sleep("100 millis"),
              i === 0 ? Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.minutes(10) })) : Effect.succeed(i)
            )
          })
        const fiber = yield* Effect.fork(Engine.run([0, 1, 2, 3], task, { maxConcurrent: 4, budget, retry: capped }))
        yield* settle
        yield* TestClock.adjust("100 millis")
        yield* settle
        // Done at 100 ms, not after the 10-minute pause.
        const results = yield* Fiber.join(fiber)
        expect(calls).toEqual([[0, 0]])
        expect(results.map((r) => [r.status, r.attempts, r.status === "succeeded" ? undefined : r.error.type])).toEqual([
          ["failed", 1, "rate_limited"],
          ["failed", 0, "rate_limited"],
          ["failed", 0, "rate_limited"],
          ["failed", 0, "rate_limited"]
        ])
        for (const r of results) expect(r.status !== "succeeded" && r.error.retryAfterMs).toBe(600_000)
        // A run that arrives during the pause fails at once too (through a guard), told what is left.
        yield* TestClock.adjust("4 minutes")
        const later = yield* Engine.run([9], (i, ctx) => ctx.guard({ budget })(task(i)), { retry: capped })
        expect(later[0]).toMatchObject({ status: "failed", attempts: 0, error: { type: "rate_limited", retryAfterMs: 360_000 } })
        expect(calls.length).toBe(1)
      })
    ))

  it.effect("an item whose own wait is within the cap but whose budget is paused longer (told by another instance) ends at once", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const budget = yield* Budget.make({ key: "up", ceiling: 2, adaptive: false, cooldownJitter: 0 })
        const fiber = yield* Effect.fork(
          Engine.run(
            [0],
            () => Effect.zipRight(Effect.sleep("100 millis"), Effect.fail(new RateLimited({ message: "429", retryAfter: Duration.seconds(5) }))),
            { budget, retry: capped }
          )
        )
        yield* settle
        // While the call is in flight, the cluster shares a 10-minute pause from another instance.
        yield* budget.cooldown(600_050)
        yield* TestClock.adjust("100 millis")
        const [result] = yield* Fiber.join(fiber)
        expect(result).toMatchObject({ status: "failed", attempts: 1, error: { type: "rate_limited", retryAfterMs: 599_950 } })
      })
    ))
})

describe("LimitAlgorithm", () => {
  const sample = (now: number, inFlight: number, latencyMs = 50) => ({ startedAt: now - latencyMs, now, inFlight, inFlightNow: inFlight - 1, latencyMs })

  it("aimd: slow start, then halves on push-back once per congestion event, learns the level from what went through, holds below it", () => {
    const e = LimitAlgorithm.aimd({ initial: 2, hold: 1_000 }).make(32, 0)
    let now = 0
    for (let i = 0; i < 20; i++) e.onSuccess(sample((now += 10), Math.floor(e.limit())))
    expect(e.limit()).toBe(22)
    // A call admitted as the 12th in flight is refused; 10 others are still in flight.
    const decreasedAt = (now += 5)
    e.onOverload({ startedAt: now - 5, now, inFlight: 12, inFlightNow: 10, latencyMs: 5 })
    expect(e.limit()).toBe(11)
    // The event's calls return: 7 went through, 3 were refused (admitted before the decrease).
    for (let i = 0; i < 3; i++) e.onOverload({ startedAt: decreasedAt - 20, now: (now += 1), inFlight: 5, inFlightNow: 9 - i, latencyMs: 20 })
    for (let i = 0; i < 7; i++) e.onSuccess({ startedAt: decreasedAt - 20, now: (now += 1), inFlight: 11, inFlightNow: 6 - i, latencyMs: 20 })
    // The upstream was serving 7 of ours when it refused: the level is 8, the limit 7 until the hold ends.
    expect(e.limit()).toBe(7)
    for (let i = 0; i < 50; i++) e.onSuccess(sample((now += 10), Math.floor(e.limit())))
    expect(e.limit()).toBe(7)
    now += 2_000
    for (let i = 0; i < 50; i++) e.onSuccess(sample((now += 10), Math.floor(e.limit())))
    expect(e.limit()).toBeGreaterThan(8)
  })

  it("a probe refused above the level: the calls that went through set the limit back at once", () => {
    const e = LimitAlgorithm.aimd({ initial: 9, hold: 1_000 }).make(32, 0)
    const at = 100
    e.onOverload({ startedAt: at - 1, now: at, inFlight: 9, inFlightNow: 8, latencyMs: 1 })
    expect(e.limit()).toBe(4.5)
    for (let i = 0; i < 8; i++) e.onSuccess({ startedAt: at - 30, now: at + 20 + i, inFlight: 8, inFlightNow: 7 - i, latencyMs: 50 })
    expect(e.limit()).toBe(8)
  })

  it("aimd/gradient: an idle budget (app-limited) does not grow", () => {
    for (const algorithm of [LimitAlgorithm.aimd({ initial: 4 }), LimitAlgorithm.gradient({ initial: 4 })]) {
      const e = algorithm.make(32, 0)
      for (let i = 0; i < 100; i++) e.onSuccess(sample(i * 10, 1))
      expect(e.limit()).toBe(4)
    }
  })

  it("gradient: a noisy but healthy upstream is not mistaken for an overloaded one", () => {
    const e = LimitAlgorithm.gradient({ initial: 4 }).make(32, 0)
    // Deterministic "noise": latencies cycling 180–420 ms around 300, unrelated to the load.
    const noise = [300, 420, 180, 350, 250, 390, 210, 330, 270, 300]
    let now = 0
    for (let i = 0; i < 3_000; i++) e.onSuccess(sample((now += 10), Math.floor(e.limit()), noise[i % noise.length] ?? 300))
    expect(e.limit()).toBe(32)
  })

  it("gradient: grows while latency stays at its baseline, shrinks past the knee and stays near it", () => {
    const e = LimitAlgorithm.gradient({ initial: 4 }).make(64, 0)
    let now = 0
    for (let i = 0; i < 200; i++) e.onSuccess(sample((now += 5), Math.floor(e.limit()), 50))
    expect(e.limit()).toBeGreaterThan(30)
    // Latency grows with load past 8 in flight: the limit comes down towards the knee.
    for (let i = 0; i < 2_000; i++) {
      const inFlight = Math.floor(e.limit())
      e.onSuccess(sample((now += 5), inFlight, 50 * Math.max(1, inFlight / 8)))
    }
    expect(e.limit()).toBeGreaterThanOrEqual(8)
    expect(e.limit()).toBeLessThan(14)
  })

  it("timeouts are push-back too", () => {
    expect(Budget.verdictOf(new AttemptTimeout({ message: "t" }))?._tag).toBe("overload")
    expect(Budget.verdictOf(new Transient({ message: "reset" }))).toBeUndefined()
  })

  it("parses rates", () => {
    expect(Budget.parseRate("600/minute")).toEqual({ limit: 600, perMs: 60_000 })
    expect(Budget.parseRate("10/s")).toEqual({ limit: 10, perMs: 1_000 })
    expect(Budget.parseRate("100 / 2 minutes")).toEqual({ limit: 100, perMs: 120_000 })
    expect(Budget.parseRate("often")).toBeUndefined()
    expect(Budget.parseRate("0/minute")).toBeUndefined()
  })
})

// ---- properties -------------------------------------------------------------------------------

const callArb = fc.record({
  ms: fc.integer({ min: 1, max: 500 }),
  outcome: fc.constantFrom("ok", "ok", "ok", "429", "timeout", "503")
})
const runsArb = fc.record({
  ceiling: fc.integer({ min: 1, max: 6 }),
  algorithm: fc.constantFrom("aimd", "gradient", "fixed"),
  runs: fc.array(
    fc.record({
      calls: fc.array(callArb, { minLength: 1, maxLength: 8 }),
      priority: fc.constantFrom<Budget.Priority>("high", "normal", "low"),
      maxConcurrent: fc.integer({ min: 1, max: 4 }),
      interruptAt: fc.option(fc.integer({ min: 0, max: 3_000 }), { nil: undefined })
    }),
    { minLength: 1, maxLength: 5 }
  ),
  /** The ceiling changed while the runs go on (an operator's PATCH). */
  resizes: fc.array(fc.record({ at: fc.integer({ min: 0, max: 1_500 }), ceiling: fc.integer({ min: 1, max: 6 }) }), {
    minLength: 1,
    maxLength: 4
  })
})

/** Calls that started while the ceiling stood below its highest value so far: the resize property's real cases. */
let startsUnderLoweredCeiling = 0

describe("Budget properties", () => {
  it.effect.prop(
    "any interleaving of runs on one budget, with resizes: a call starts only while in flight ≤ the current ceiling, 1 ≤ limit ≤ ceiling, nothing held at the end",
    [runsArb],
    ([s]) =>
      Effect.scoped(
        Effect.gen(function* () {
          const algorithm = LimitAlgorithm.byName(s.algorithm) ?? LimitAlgorithm.fixed
          const budget = yield* Budget.make({ key: "p", ceiling: s.ceiling, algorithm })
          const state = { inFlight: 0, peak: 0, badLimit: false, overCeiling: false }
          // The ceiling now, when it last changed, and the highest it has been.
          const size = { ceiling: s.ceiling, changedAt: -1, highest: s.ceiling }
          const task = (call: (typeof s.runs)[number]["calls"][number]) =>
            Effect.gen(function* () {
              const snap = yield* budget.snapshot
              const now = yield* Clock.currentTimeMillis
              // A call admitted just before a resize may start in the same instant after it; any
              // later start must fit the size in force (calls already in flight past a lowered
              // ceiling finish, nobody joins them).
              const settled = now !== size.changedAt
              if (settled && snap.inFlight > size.ceiling) state.overCeiling = true
              if (snap.limit < 1 || (settled && snap.limit > size.ceiling)) state.badLimit = true
              if (settled && size.ceiling < size.highest) startsUnderLoweredCeiling++
              yield* tracked(state, call.ms)
              if (call.outcome === "429") return yield* new RateLimited({ message: "429", retryAfter: Duration.millis(call.ms) })
              if (call.outcome === "503") return yield* new Transient({ message: "503", status: 503 })
              if (call.outcome === "timeout") return yield* new AttemptTimeout({ message: "408" })
            })
          const fibers = yield* Effect.forEach(s.runs, (run) =>
            Effect.fork(
              Engine.run(run.calls, task, {
                maxConcurrent: run.maxConcurrent,
                budget,
                priority: run.priority,
                retry: RetryPolicy.make({ maxRetries: 2 })
              })
            )
          )
          yield* Effect.forEach(s.resizes, (resize) =>
            Effect.fork(
              Effect.zipRight(
                Effect.sleep(Duration.millis(resize.at)),
                Effect.zipRight(
                  Effect.flatMap(Clock.currentTimeMillis, (at) =>
                    Effect.sync(() => {
                      size.ceiling = resize.ceiling
                      size.changedAt = at
                      size.highest = Math.max(size.highest, resize.ceiling)
                    })
                  ),
                  budget.update({ ceiling: resize.ceiling })
                )
              )
            )
          )
          const interrupters = yield* Effect.forEach(s.runs, (run, i) =>
            run.interruptAt === undefined
              ? Effect.succeed(undefined)
              : Effect.fork(Effect.zipRight(Effect.sleep(Duration.millis(run.interruptAt)), Fiber.interrupt(fibers[i]!)))
          )
          yield* TestClock.adjust("2 hours")
          yield* Effect.forEach(fibers, Fiber.await)
          yield* Effect.forEach(interrupters, (f) => (f === undefined ? Effect.void : Fiber.await(f)))
          expect(state.overCeiling).toBe(false)
          expect(state.peak).toBeLessThanOrEqual(size.highest)
          expect(state.badLimit).toBe(false)
          const snap = yield* budget.snapshot
          expect([snap.inFlight, snap.waiting, snap.waitingTenants]).toEqual([0, 0, 0])
          expect(state.inFlight).toBe(0)
        })
      ),
    { fastCheck: { numRuns: 40 } }
  )

  it("the resize property met calls starting under a lowered ceiling", () => {
    expect(startsUnderLoweredCeiling).toBeGreaterThan(0)
  })

  it.effect.prop(
    "no waiting tenant waits more than (number of tenants) grants of its priority level",
    [fc.array(fc.record({ calls: fc.integer({ min: 1, max: 6 }), priority: fc.constantFrom<Budget.Priority>("high", "normal", "low") }), { minLength: 1, maxLength: 6 })],
    ([tenants]) =>
      Effect.scoped(
        Effect.gen(function* () {
          const budget = yield* Budget.make({ key: "f", ceiling: 1, adaptive: false })
          const grants: Array<number> = []
          const blocker = yield* Effect.fork(budget.admit(Budget.tenant("blocker"))(Effect.sleep("1 second")))
          yield* settle
          const fibers = yield* Effect.forEach(tenants, (spec, i) => {
            const t = Budget.tenant(`t${i}`, spec.priority)
            return Effect.forEach(Array.from({ length: spec.calls }), () =>
              Effect.fork(budget.admit(t)(Effect.zipRight(Effect.sync(() => grants.push(i)), Effect.sleep("10 millis"))))
            )
          })
          yield* settle
          yield* TestClock.adjust("1 hour")
          yield* Fiber.join(blocker)
          yield* Effect.forEach(fibers.flat(), Fiber.join)
          expect(grants.length).toBe(tenants.reduce((n, t) => n + t.calls, 0))
          for (const [i, spec] of tenants.entries()) {
            const sameLevel = tenants.map((t, j) => (t.priority === spec.priority ? j : -1)).filter((j) => j >= 0)
            const mine = grants.flatMap((g, at) => (g === i ? [at] : []))
            // Grants to this level only; before its first grant and between its grants.
            let previous = -1
            for (const at of mine) {
              const others = grants.slice(previous + 1, at).filter((g) => sameLevel.includes(g) && g !== i).length
              expect(others).toBeLessThanOrEqual(sameLevel.length - 1)
              previous = at
            }
          }
        })
      ),
    { fastCheck: { numRuns: 50 } }
  )
})
