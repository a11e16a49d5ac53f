/**
 * The cluster's breaker sync reads the shared table when a change is announced, not on a timer: an
 * idle instance read it four times a second for nothing. While a shared breaker is open it reads it
 * every poll interval (the half-open probe is claimed on time), and while notifications are not heard
 * it polls; a lost announcement is caught by the notifications' sweep (a wake-up like any other).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Queue, Stream, TestClock } from "effect"
import * as CircuitBreakerRegistry from "../src/engine/CircuitBreakerRegistry.js"
import * as ClusterBreakers from "../src/jobs/ClusterBreakers.js"
import { Notifications, type JobNotifications } from "../src/jobs/JobNotifications.js"
import { type BreakerState, CoordinationStore } from "../src/jobs/store/Coordination.js"

const setup = (options: { readonly listening: boolean; readonly rows: ReadonlyArray<BreakerState> }) =>
  Effect.gen(function* () {
    let reads = 0
    const wake = yield* Queue.unbounded<void>()
    const coordination = CoordinationStore.make({
      renewClaim: () => Effect.succeed({ target: 0, settled: true }),
      dropClaim: () => Effect.void,
      publishBreaker: () => Effect.void,
      breakerStates: Effect.sync(() => {
        reads++
        return options.rows
      }),
      claimProbe: () => Effect.succeed(false),
      shareCooldown: () => Effect.void,
      publishUpstreamSettings: () => Effect.void,
      upstreamStates: Effect.succeed([])
    })
    const notifications: JobNotifications = {
      announce: () => Effect.void,
      wakes: () => Stream.never,
      signal: () => Effect.void,
      // One at once, then one per offer: what the process's notifications do.
      topicWakes: () => Stream.concat(Stream.make(undefined), Stream.fromQueue(wake)),
      listening: () => options.listening
    }
    yield* Layer.build(
      ClusterBreakers.layer.pipe(
        Layer.provide(Layer.succeed(CoordinationStore, coordination)),
        Layer.provide(Layer.succeed(Notifications, notifications)),
        Layer.provide(CircuitBreakerRegistry.layer)
      )
    )
    return { reads: () => reads, wake: Queue.offer(wake, undefined) }
  })

const settle = Effect.sleep(Duration.zero).pipe(Effect.repeatN(20))

/** Reads of the table over four poll intervals (250 ms), counted once the sync has settled. */
const readsOverFourPolls = (s: { readonly reads: () => number }) =>
  Effect.gen(function* () {
    yield* settle
    const first = s.reads()
    for (let i = 0; i < 4; i++) {
      yield* TestClock.adjust("250 millis")
      yield* settle
    }
    return s.reads() - first
  })

describe("ClusterBreakers: reads the shared table when woken", () => {
  it.scoped("listening, every breaker closed: no read until a wake-up, then one per wake-up", () =>
    Effect.gen(function* () {
      const s = yield* setup({ listening: true, rows: [] })
      yield* settle
      const first = s.reads()
      expect(first).toBeGreaterThanOrEqual(1)
      expect(first).toBeLessThanOrEqual(2)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(s.reads()).toBe(first)
      // An announcement, or the sweep's wake-up after a lost one.
      yield* s.wake
      yield* settle
      expect(s.reads()).toBe(first + 1)
    })
  )

  it.scoped("a shared breaker open: read every poll interval (250 ms)", () =>
    Effect.gen(function* () {
      const s = yield* setup({ listening: true, rows: [{ breaker: "forum", state: "open", openUntil: Date.now() + 60_000, updatedAt: Date.now() }] })
      expect(yield* readsOverFourPolls(s)).toBe(4)
    })
  )

  it.scoped("not listening: polls every 250 ms", () =>
    Effect.gen(function* () {
      const s = yield* setup({ listening: false, rows: [] })
      expect(yield* readsOverFourPolls(s)).toBe(4)
    })
  )
})
