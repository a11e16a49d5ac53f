import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Layer, Metric, Stream, TestClock } from "effect"
import { CircuitBreaker, CircuitBreakerRegistry, Transient } from "../src/index.js"
import * as EngineMetrics from "../src/engine/EngineMetrics.js"

const failWith = (b: CircuitBreaker.CircuitBreaker) =>
  Effect.flatMap(b.acquire, (permit) => b.release(permit, "failure"))
const succeedWith = (b: CircuitBreaker.CircuitBreaker) =>
  Effect.flatMap(b.acquire, (permit) => b.release(permit, "success"))

describe("CircuitBreaker", () => {
  it.effect("closed → open after 3 consecutive failures; a success in between resets the count", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(3) })
      yield* failWith(b)
      yield* failWith(b)
      yield* succeedWith(b)
      yield* failWith(b)
      yield* failWith(b)
      expect((yield* b.snapshot).status).toBe("closed")
      yield* failWith(b)
      const snap = yield* b.snapshot
      expect(snap.status).toBe("open")
      expect(snap.retryAfterMs).toBe(60_000)
      const rejected = yield* Effect.exit(b.acquire)
      expect(Exit.isFailure(rejected)).toBe(true)
    }))

  it.effect("open → half-open after the recovery timeout; one probe at a time; success closes", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "10 seconds" })
      yield* failWith(b)
      yield* TestClock.adjust("9999 millis")
      expect(Exit.isFailure(yield* Effect.exit(b.acquire))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const probe = yield* b.acquire
      expect(probe.probe).toBe(true)
      expect((yield* b.snapshot).status).toBe("half_open")
      // A second caller is turned away while the probe is out.
      const second = yield* Effect.exit(b.acquire)
      expect(second).toMatchObject({ _tag: "Failure" })
      yield* b.release(probe, "success")
      expect((yield* b.snapshot).status).toBe("closed")
    }))

  it.effect("tryAcquireNow/releaseNow: the closed permit without an effect; the change applies at once, the returned effect only announces it", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(2), recoveryTimeout: "10 seconds" })
      const transitions: Array<CircuitBreaker.Transition> = []
      const changes = yield* b.subscribe
      yield* Effect.forkScoped(Stream.runForEach(changes, (t) => Effect.sync(() => void transitions.push(t))))
      const first = b.tryAcquireNow()
      expect(first).toMatchObject({ probe: false })
      if (first === undefined) return
      // Nothing to announce: the very `Effect.void`, which the engine then skips.
      expect(b.releaseNow(first, "success") === Effect.void).toBe(true)
      const a = b.tryAcquireNow()
      const c = b.tryAcquireNow()
      if (a === undefined || c === undefined) return expect.unreachable()
      expect(b.releaseNow(a, "failure") === Effect.void).toBe(true)
      const announce = b.releaseNow(c, "failure")
      // Open before the announcement runs: no permit without an effect, and `acquire` turns callers away.
      expect(b.tryAcquireNow()).toBeUndefined()
      expect(Exit.isFailure(yield* Effect.exit(b.acquire))).toBe(true)
      yield* announce
      yield* Effect.repeatN(Effect.yieldNow(), 10)
      expect(transitions.map((t) => t.to)).toEqual(["open"])
      // While open, and half-open, the engine goes through `acquire`.
      yield* TestClock.adjust("10 seconds")
      expect(b.tryAcquireNow()).toBeUndefined()
      const probe = yield* b.acquire
      expect(probe.probe).toBe(true)
      expect(b.tryAcquireNow()).toBeUndefined()
      yield* b.releaseNow(probe, "success")
      expect((yield* b.snapshot).status).toBe("closed")
      expect(b.tryAcquireNow()).toMatchObject({ probe: false })
    }).pipe(Effect.scoped))

  it.effect("override Probe: the next call probes; a probe already in flight keeps its place (no second probe)", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "10 seconds" })
      // Closed: the next call becomes the probe.
      yield* b.override({ _tag: "Probe" })
      const probe = yield* b.acquire
      expect(probe.probe).toBe(true)
      // The cluster, having read "open" a round trip ago, says "probe" again: the one in flight stays the only one.
      yield* b.override({ _tag: "Probe" })
      expect(Exit.isFailure(yield* Effect.exit(b.acquire))).toBe(true)
      yield* b.release(probe, "success")
      expect((yield* b.snapshot).status).toBe("closed")
      // Open with time left: the deadline is brought forward to now.
      yield* failWith(b)
      expect(Exit.isFailure(yield* Effect.exit(b.acquire))).toBe(true)
      yield* b.override({ _tag: "Probe" })
      const again = yield* b.acquire
      expect(again.probe).toBe(true)
      yield* b.release(again, "failure")
      expect((yield* b.snapshot).status).toBe("open")
    }))

  it.effect("a failed probe re-opens it for another recovery period", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "10 seconds" })
      yield* failWith(b)
      yield* TestClock.adjust("10 seconds")
      yield* failWith(b)
      const snap = yield* b.snapshot
      expect(snap.status).toBe("open")
      expect(snap.retryAfterMs).toBe(10_000)
    }))

  it.effect("a neutral outcome frees the probe slot without deciding", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "1 second" })
      yield* failWith(b)
      yield* TestClock.adjust("1 second")
      const probe = yield* b.acquire
      yield* b.release(probe, "neutral")
      expect(yield* b.snapshot).toMatchObject({ status: "half_open", probesInFlight: 0 })
      yield* succeedWith(b)
      expect((yield* b.snapshot).status).toBe("closed")
    }))

  it.effect("outcomes of calls admitted before a transition are ignored", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "1 second" })
      const stale = yield* b.acquire
      yield* failWith(b)
      yield* TestClock.adjust("1 second")
      yield* succeedWith(b) // probe closes it
      yield* b.release(stale, "failure") // from the first closed period: must not re-open
      expect((yield* b.snapshot).status).toBe("closed")
    }))

  it.effect("failure-rate rule opens when the share of failures in the window reaches the threshold", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", {
        rule: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 10, window: "10 seconds" })
      })
      // Alternating outcomes never make 3 in a row, but reach 50% once 10 calls are seen.
      for (let i = 0; i < 4; i++) {
        yield* succeedWith(b)
        yield* failWith(b)
      }
      expect((yield* b.snapshot).status).toBe("closed")
      yield* succeedWith(b)
      yield* failWith(b)
      expect((yield* b.snapshot).status).toBe("open")
    }))

  it.effect("failure-rate window forgets outcomes older than the window", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("k", {
        rule: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 4, window: "10 seconds" })
      })
      yield* failWith(b)
      yield* failWith(b)
      yield* failWith(b)
      yield* TestClock.adjust("11 seconds")
      yield* succeedWith(b)
      yield* succeedWith(b)
      yield* succeedWith(b)
      yield* failWith(b)
      expect((yield* b.snapshot).status).toBe("closed")
    }))

  it.scoped("transitions are published, counted and reflected in the state gauge", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("metrics-key", { rule: CircuitBreaker.consecutiveFailures(1), recoveryTimeout: "1 second" })
      const changes = yield* Effect.fork(Stream.runCollect(Stream.take(yield* b.subscribe, 3)))
      yield* failWith(b)
      expect((yield* Metric.value(EngineMetrics.breakerState("metrics-key"))).value).toBe(2)
      yield* TestClock.adjust("1 second")
      yield* succeedWith(b)
      const seen = Chunk.toReadonlyArray(yield* Fiber.join(changes)).map((t) => `${t.from}->${t.to}`)
      expect(seen).toEqual(["closed->open", "open->half_open", "half_open->closed"])
      expect((yield* Metric.value(EngineMetrics.breakerState("metrics-key"))).value).toBe(0)
      expect((yield* Metric.value(EngineMetrics.breakerTransitions("metrics-key", "open"))).count).toBe(1)
    }))

  it.effect("withCircuitBreaker guards any effect; interruption and non-counting errors are neutral", () =>
    Effect.gen(function* () {
      const b = yield* CircuitBreaker.make("combinator", { rule: CircuitBreaker.consecutiveFailures(2) })
      const boom = Effect.fail(new Transient({ message: "503" }))
      const notFound = Effect.fail("404" as const)
      yield* Effect.exit(CircuitBreaker.withCircuitBreaker(notFound, b, { isFailure: (e) => e !== "404" }))
      yield* Effect.exit(boom.pipe(CircuitBreaker.withCircuitBreaker(b)))
      expect((yield* b.snapshot).status).toBe("closed")
      yield* Effect.exit(boom.pipe(CircuitBreaker.withCircuitBreaker(b)))
      expect((yield* b.snapshot).status).toBe("open")
      const exit = yield* Effect.exit(CircuitBreaker.withCircuitBreaker(Effect.succeed(1), b))
      expect(exit).toMatchObject({ _tag: "Failure", cause: { error: { _tag: "CircuitOpen", key: "combinator" } } })
    }))
})

describe("CircuitBreakerRegistry", () => {
  it.effect("returns the same breaker for the same key, and lists them all", () =>
    Effect.gen(function* () {
      const registry = yield* CircuitBreakerRegistry.CircuitBreakerRegistry
      const a = yield* registry.get("forum")
      const again = yield* registry.get("forum")
      yield* registry.get("llm")
      expect(again).toBe(a)
      yield* failWith(a)
      yield* failWith(a)
      yield* failWith(a)
      const all = yield* registry.snapshots
      expect(all.map((s) => [s.key, s.status])).toEqual([
        ["forum", "open"],
        ["llm", "closed"]
      ])
    }).pipe(Effect.provide(CircuitBreakerRegistry.layer)))

  it.effect("uses the defaults it was built with", () =>
    Effect.gen(function* () {
      const registry = yield* CircuitBreakerRegistry.CircuitBreakerRegistry
      const b = yield* registry.get("x")
      yield* failWith(b)
      expect((yield* b.snapshot).status).toBe("open")
    }).pipe(
      Effect.provide(CircuitBreakerRegistry.layerWith({ rule: CircuitBreaker.consecutiveFailures(1) }).pipe(Layer.orDie))
    ))
})
