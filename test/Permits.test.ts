import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import * as Permits from "../src/engine/Permits.js"

/** Lets forked fibers (and the race inside withPermitUnless) run until they block. */
const settle = Effect.yieldNow().pipe(Effect.repeatN(10))

describe("Permits", () => {
  it.effect("first come, first served: a freed permit goes to the longest waiter", () =>
    Effect.gen(function* () {
      const permits = yield* Permits.make(1)
      const order: Array<number> = []
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(permits.withPermit(Deferred.await(gate)))
      yield* Effect.yieldNow()
      const waiters = yield* Effect.forEach([1, 2, 3], (n) =>
        Effect.fork(permits.withPermit(Effect.sync(() => order.push(n))))
      )
      yield* Effect.yieldNow()
      expect(permits.waiting()).toBe(3)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.joinAll(waiters)
      expect(order).toEqual([1, 2, 3])
      expect(permits.inUse()).toBe(0)
    }))

  it.effect("resize: growing admits waiters at once; shrinking takes nothing back from holders", () =>
    Effect.gen(function* () {
      const permits = yield* Permits.make(0)
      const running = yield* Effect.forEach([1, 2, 3], () => Effect.fork(permits.withPermit(Effect.sleep("1 second"))))
      yield* Effect.yieldNow()
      expect(permits.inUse()).toBe(0)
      yield* permits.resize(2)
      expect(permits.inUse()).toBe(2)
      yield* permits.resize(1)
      expect(permits.inUse()).toBe(2)
      yield* TestClock.adjust("1 second")
      // Both holders left; only one may take their place under the new size.
      expect(permits.inUse()).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(running)
      expect(permits.inUse()).toBe(0)
    }))

  it.effect("an interrupted waiter leaves the queue; an interrupted holder gives its permit back", () =>
    Effect.gen(function* () {
      const permits = yield* Permits.make(1)
      const holder = yield* Effect.fork(permits.withPermit(Effect.never))
      const waiter = yield* Effect.fork(permits.withPermit(Effect.void))
      yield* Effect.yieldNow()
      expect(permits.waiting()).toBe(1)
      yield* Fiber.interrupt(waiter)
      expect(permits.waiting()).toBe(0)
      yield* Fiber.interrupt(holder)
      expect(permits.inUse()).toBe(0)
      yield* permits.withPermit(Effect.void)
    }))

  it.effect("withPermitIn: once its group is stopped, waiters never start and hold no permit; holders finish", () =>
    Effect.gen(function* () {
      const permits = yield* Permits.make(1)
      const group = permits.group()
      const started: Array<string> = []
      const holder = yield* Effect.fork(
        permits.withPermitIn(group)(Effect.zipRight(Effect.sync(() => started.push("holder")), Effect.sleep("1 second")))
      )
      yield* settle
      const waiter = yield* Effect.fork(permits.withPermitIn(group)(Effect.sync(() => started.push("waiter"))))
      yield* settle
      expect(permits.waiting()).toBe(1)
      yield* permits.stop(group)
      yield* settle
      // The waiter left the queue; the holder goes on.
      expect(permits.waiting()).toBe(0)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(holder)
      expect(permits.inUse()).toBe(0)
      expect(waiter.unsafePoll()).toBeNull()
      // Others (not stopped) still get the permit.
      yield* permits.withPermit(Effect.sync(() => started.push("other")))
      yield* Fiber.interrupt(waiter)
      expect(started).toEqual(["holder", "other"])
      // Stopped before asking: never starts either.
      const late = yield* Effect.fork(permits.withPermitIn(group)(Effect.sync(() => started.push("late"))))
      yield* settle
      expect(late.unsafePoll()).toBeNull()
      expect(permits.inUse()).toBe(0)
      yield* Fiber.interrupt(late)
      expect(started).toEqual(["holder", "other"])
    }))

  it.effect.prop(
    "never more holders than permits, nothing lost, whatever the sizes, durations and interruptions",
    [
      fc.array(fc.record({ ms: fc.integer({ min: 0, max: 50 }), interruptAt: fc.option(fc.integer({ min: 0, max: 60 })) }), {
        minLength: 1,
        maxLength: 40
      }),
      fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 5 })
    ],
    ([tasks, sizes]) =>
      Effect.gen(function* () {
        const permits = yield* Permits.make(sizes[0] ?? 1)
        let inside = 0
        let peak = 0
        const fibers = yield* Effect.forEach(tasks, (task) =>
          Effect.fork(
            permits.withPermit(
              Effect.gen(function* () {
                inside++
                peak = Math.max(peak, inside)
                yield* Effect.sleep(`${task.ms} millis`).pipe(Effect.ensuring(Effect.sync(() => inside--)))
              })
            )
          )
        )
        yield* Effect.forEach(tasks, (task, i) => {
          const fiber = fibers[i]
          return task.interruptAt !== null && fiber !== undefined
            ? Effect.fork(Effect.delay(Fiber.interrupt(fiber), `${task.interruptAt} millis`))
            : Effect.void
        })
        for (const [i, next] of sizes.slice(1).entries()) {
          yield* TestClock.adjust(`${10 * (i + 1)} millis`)
          yield* permits.resize(next)
        }
        const peakWhileLimited = peak
        // Finally enough permits for everyone left.
        yield* permits.resize(tasks.length)
        yield* TestClock.adjust("10 seconds")
        yield* Effect.forEach(fibers, Fiber.await)
        expect(peakWhileLimited).toBeLessThanOrEqual(Math.max(...sizes))
        expect(permits.inUse()).toBe(0)
        expect(permits.waiting()).toBe(0)
        expect(inside).toBe(0)
      })
  )
})
