/**
 * The workers: `maxConcurrent` long-lived fibers that each take the next unit — a retry that is
 * ready, else a new item from the source — run its attempt and go on, so a slot is refilled the
 * moment an attempt ends (work-conserving, no batches) and no fiber is forked per item. A worker
 * waits while the outbox is full or nothing can start (the source is empty, too many retries are
 * waiting), retires when the limit drops below the workers running or the run stops or drains, and
 * is replaced when the watchdog cut its attempt.
 */
import { Cause, Deferred, Effect, Exit, Option } from "effect"
import { makeAttempt } from "./attempt.js"
import { outboxFull } from "./outbox.js"
import type { Source } from "./source.js"
import { checkDone, maxWaiting, newSlot, newUnit, parkIn, wakeAll, type RunState, type Slot } from "./state.js"
import type { Task } from "./types.js"

/** Yield to other fibers after this many units in a row (an iterable of immediate tasks never suspends). */
const YIELD_EVERY = 64

const workerLoop = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>,
  slot: Slot<I>
): Effect.Effect<void, E, R | RS> => {
  let sinceYield = 0
  const attempt = makeAttempt(run, task, slot)
  const idleWait = parkIn(run.idle)
  const fullWait = outboxFull(run)
  const attemptThenStep = Effect.suspend(() => Effect.flatMap(attempt, afterUnit))
  const pullAsync = Effect.flatMap(
    Effect.onInterrupt(source.pull, () => Effect.sync(() => run.pulling--)),
    (next) => {
      run.pulling--
      if (Option.isNone(next)) {
        run.exhausted = true
        checkDone(run)
        return step
      }
      const unit = newUnit(run, next.value)
      if (run.draining) {
        // Pulled as the drain began: left over with the rest.
        run.ready.push(unit)
        return step
      }
      slot.unit = unit
      return Effect.flatMap(attempt, afterUnit)
    }
  )
  const afterUnit = (): Effect.Effect<void, E, R | RS> => {
    if (++sinceYield >= YIELD_EVERY) {
      sinceYield = 0
      return Effect.zipRight(Effect.yieldNow(), step)
    }
    return step
  }
  const step: Effect.Effect<void, E, R | RS> = Effect.suspend(() => {
    if (run.outbox.length >= run.maxOutbox) return Effect.zipRight(fullWait, step)
    if (run.stopReason !== undefined || run.active > run.limit || run.draining) return Effect.void
    const unit = run.ready.shift()
    if (unit !== undefined) {
      slot.unit = unit
      return Effect.flatMap(attempt, afterUnit)
    }
    if (!run.exhausted && run.waiting < maxWaiting(run)) {
      const pullSync = source.pullSync
      if (pullSync !== undefined) {
        // Iterables: no effect needed to get the next item.
        const next = pullSync()
        if (next.done === true) {
          run.exhausted = true
          checkDone(run)
          return step
        }
        slot.unit = newUnit(run, next.value)
        return attemptThenStep
      }
      run.pulling++
      return pullAsync
    }
    checkDone(run)
    return Effect.zipRight(idleWait, step)
  })
  return step
}

/** Starts one more worker in the run's scope. */
const spawnWorker = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>
): Effect.Effect<void, never, R | RS> =>
  Effect.suspend(() => {
    const slot = newSlot<I>()
    run.active++
    run.slots.add(slot)
    const worker = Effect.interruptible(workerLoop(run, source, task, slot)).pipe(
      Effect.onExit((exit) =>
        Effect.suspend(() => {
          run.active--
          run.slots.delete(slot)
          const held = slot.unit
          if (held !== undefined && !held.finalized) {
            // Died between taking a unit and starting it: give it back.
            slot.unit = undefined
            run.ready.unshift(held)
          }
          if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
            const err = Cause.failureOption(exit.cause)
            if (Option.isSome(err)) Deferred.unsafeDone(run.stopped, Exit.fail(err.value))
            else Deferred.unsafeDone(run.stopped, Exit.failCause(Cause.die(Cause.squash(exit.cause))))
            return Effect.void
          }
          if (run.stopReason === undefined && run.active < run.limit && slot.timedOut) {
            return spawnWorker(run, source, task)
          }
          return Effect.void
        })
      )
    )
    return Effect.map(Effect.forkIn(worker, run.scope), (fiber) => {
      slot.fiber = fiber
    })
  })

/** Applies a new `maxConcurrent`: more workers start at once; extra ones retire after their attempt. */
export const setLimit = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>,
  n: number
): Effect.Effect<void, never, R | RS> =>
  Effect.suspend(() => {
    run.limit = Math.max(1, Math.floor(n))
    if (run.active > run.limit) {
      wakeAll(run)
      return Effect.void
    }
    const missing = run.limit - run.active
    return Effect.repeatN(spawnWorker(run, source, task), Math.max(0, missing - 1)).pipe(Effect.when(() => missing > 0))
  })
