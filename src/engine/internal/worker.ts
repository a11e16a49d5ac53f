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
import * as Spans from "./spans.js"
import type { TaskError } from "../Errors.js"
import { checkDone, maxWaiting, newSlot, newUnit, parkIn, wakeAll, type RunState, type Slot, type Unit } from "./state.js"
import type { Task } from "./types.js"

/**
 * Yield to other fibers after this many units in a row (an iterable of immediate tasks never
 * suspends). A stream's buffer holds this many results per worker (Engine.ts).
 */
export const YIELD_EVERY = 64

type Restore = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>

/**
 * A worker's loop. It runs uninterruptibly, and only the attempt's call and the worker's waits are
 * interruptible (`restore`): an item then costs one change of interruptibility instead of the two of
 * a masked attempt inside an interruptible loop. A worker that was interrupted outside those (a
 * timeout landing as its attempt ended) notices at the next interruption point: after an attempt
 * that timed out or was interrupted, and every `YIELD_EVERY` units.
 */
const workerLoop = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>,
  slot: Slot<I>,
  restore: Restore,
  spans: Spans.RunSpans | undefined
): Effect.Effect<void, E, R | RS> => {
  let sinceYield = 0
  // Spans only in a run that traces (spans.ts): otherwise the attempt runs as it is.
  const plain = makeAttempt(run, task, slot)
  const attempt = spans === undefined ? plain : Spans.traced(plain, spans, slot)
  const idleWait = restore(parkIn(run.idle))
  const fullWait = restore(outboxFull(run))
  const yieldNow = restore(Effect.yieldNow())
  const interruptionPoint = restore(Effect.void)
  const afterUnit = (): Effect.Effect<void, E, R | RS> => {
    // Results waiting for a stream's consumer: let it (one fiber among the workers) run before the
    // outbox fills and parks every worker.
    if (++sinceYield >= YIELD_EVERY || (run.outbox.length > 0 && run.offerNow !== undefined)) {
      sinceYield = 0
      return Effect.zipRight(yieldNow, step)
    }
    // The next unit's effect straight from the handler that ran this one: going through `step`
    // (a suspend) cost one more effect per item of the 5 it takes.
    return decide()
  }
  const afterUnitLater = Effect.suspend(afterUnit)
  const then = (rest: Effect.Effect<void>, interrupted: boolean): Effect.Effect<void, E, R | RS> => {
    // A timed-out worker was interrupted by the watchdog: it ends here (and is replaced).
    if (interrupted || slot.timedOut) return Effect.zipRight(rest, Effect.zipRight(interruptionPoint, step))
    return rest === Effect.void ? afterUnit() : Effect.zipRight(rest, afterUnitLater)
  }
  const handlers = {
    onSuccess: (value: A) => then(attempt.onSuccess(value), false),
    onFailure: (cause: Cause.Cause<TaskError>) => then(attempt.onFailure(cause), Cause.isInterruptedOnly(cause))
  }
  const runUnit = (unit: Unit<I>): Effect.Effect<void, E, R | RS> => {
    slot.unit = unit
    return Effect.matchCauseEffect(restore(attempt.begin()), handlers)
  }
  const pullAsync = Effect.flatMap(
    restore(Effect.onInterrupt(source.pull, () => Effect.sync(() => run.pulling--))),
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
      return runUnit(unit)
    }
  )
  /** What the worker does next, decided now. */
  const decide = (): Effect.Effect<void, E, R | RS> => {
    if (run.outbox.length >= run.maxOutbox) return Effect.zipRight(fullWait, step)
    if (run.stopReason !== undefined || run.teardown.started || run.active > run.limit || run.draining) return Effect.void
    // Retries are rare: an empty queue's `shift` was a measurable share of an immediate item.
    const unit = run.ready.length > 0 ? run.ready.shift() : undefined
    if (unit !== undefined) return runUnit(unit)
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
        return runUnit(newUnit(run, next.value))
      }
      run.pulling++
      return pullAsync
    }
    checkDone(run)
    return Effect.zipRight(idleWait, step)
  }
  const step: Effect.Effect<void, E, R | RS> = Effect.suspend(decide)
  return step
}

/** Starts one more worker in the run's scope. */
const spawnWorker = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>
): Effect.Effect<void, never, R | RS> =>
  Effect.flatMap(Spans.forRun(run), (spans) => {
    const slot = newSlot<I>()
    run.active++
    run.slots.add(slot)
    // `interruptible` first: a replacement worker is started from a finalizer and would inherit its
    // uninterruptibility, which `restore` would then bring back around the calls.
    const worker = Effect.interruptible(
      Effect.uninterruptibleMask((restore) => workerLoop(run, source, task, slot, restore, spans))
    ).pipe(
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
