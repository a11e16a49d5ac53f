/**
 * The workers: `maxConcurrent` long-lived fibers that each take the next unit — a retry that is
 * ready, else a new item from the source — run its attempt and go on, so a slot is refilled the
 * moment an attempt ends (work-conserving, no batches) and no fiber is forked per item. A worker
 * waits while the outbox is full or nothing can start (the source is empty, too many retries are
 * waiting), retires when the limit drops below the workers running or the run stops or drains, and
 * is replaced when the watchdog cut its attempt.
 */
import { Cause, Deferred, Effect, Exit, FiberId, Option } from "effect"
import { makeAttempt, type Attempt } from "./attempt.js"
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

/**
 * A worker's loop. It runs interruptibly and changes nothing about interruptibility per item: an
 * item is the task's own effect under one `matchCauseEffect`, so an immediate item costs the run
 * loop what it costs 100 plain fibers (W5's "Effect workers") plus the bookkeeping. Masking each
 * call (an uninterruptible loop that restores interruptibility around the call) cost three more
 * steps of the run loop and three allocations per item.
 *
 * Nothing is lost to an interruption on the way: the bookkeeping after a call runs synchronously in
 * the handler the call returns to, and an interrupted fiber skips that handler and ends — then its
 * exit (`spawnWorker`) accounts for what it held: the attempt it was in (as the handler would have
 * for an interruption: a timeout, a stop, a drain), a unit it had taken but not begun (given back),
 * and what the handler had left to run (`slot.rest`: a retry to schedule, a breaker change to
 * announce), which runs uninterruptibly either way.
 */
const workerLoop = <I, A, E, R, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  slot: Slot<I>,
  attempt: Attempt<A, R>
): Effect.Effect<void, E, R | RS> => {
  let sinceYield = 0
  const idleWait = parkIn(run.idle)
  const fullWait = outboxFull(run)
  const yieldNow = Effect.yieldNow()
  const afterUnit = (): Effect.Effect<void, E, R | RS> => {
    // Results waiting for a stream's consumer: let it (one fiber among the workers) run before the
    // outbox fills and parks every worker.
    if (++sinceYield >= YIELD_EVERY || (run.outbox.length > 0 && run.offerNow !== undefined)) {
      sinceYield = 0
      return Effect.zipRight(yieldNow, step)
    }
    // The next unit's effect straight from the handler that ran this one: going through `step`
    // (a suspend) cost one more effect per item.
    return decide()
  }
  const restThenNext = Effect.zipRight(runRest(slot), Effect.suspend(afterUnit))
  // The watchdog cut this attempt (its interruption lands, or landed, as the attempt ended): the
  // worker ends here and is replaced (spawnWorker).
  const cut = Effect.zipRight(runRest(slot), Effect.interrupt)
  const then = (rest: Effect.Effect<void>): Effect.Effect<void, E, R | RS> => {
    if (rest !== Effect.void) slot.rest = rest
    if (slot.timedOut) return cut
    return rest === Effect.void ? afterUnit() : restThenNext
  }
  const handlers = {
    onSuccess: (value: A) => then(attempt.onSuccess(value)),
    onFailure: (cause: Cause.Cause<TaskError>) => then(attempt.onFailure(cause))
  }
  const runUnit = (unit: Unit<I>): Effect.Effect<void, E, R | RS> => {
    slot.unit = unit
    return Effect.matchCauseEffect(attempt.begin(), handlers)
  }
  // A pulled item must not be lost to an interruption between the pull and the worker holding it.
  const pulled = Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(Effect.onInterrupt(source.pull, () => Effect.sync(() => run.pulling--))), (next) =>
      Effect.sync(() => {
        run.pulling--
        if (Option.isNone(next)) {
          run.exhausted = true
          checkDone(run)
          return
        }
        const unit = newUnit(run, next.value)
        // Pulled as the drain began: left over with the rest.
        if (run.draining) run.ready.push(unit)
        else slot.unit = unit
      })
    )
  )
  const pullAsync = Effect.zipRight(
    pulled,
    Effect.suspend(() => {
      const unit = slot.unit
      return unit === undefined ? decide() : runUnit(unit)
    })
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

/** What an attempt's handler left to run, run whole; once (the worker's exit runs it if the worker could not). */
const runRest = <I>(slot: Slot<I>): Effect.Effect<void> =>
  Effect.uninterruptible(
    Effect.suspend(() => {
      const rest = slot.rest
      slot.rest = undefined
      return rest ?? Effect.void
    })
  )

/**
 * What a worker that ended leaves behind, accounted for: what its last handler left to run, the
 * attempt it was in when interrupted (its handler was skipped), a unit it held but had not begun.
 */
const settleWorker = <I, A, E, R>(
  run: RunState<I, A, E>,
  slot: Slot<I>,
  attempt: Attempt<A, R>,
  cause: Cause.Cause<unknown>
): Effect.Effect<void> => {
  const held = slot.unit
  let cutShort: Effect.Effect<void> = Effect.void
  if (held !== undefined && slot.inAttempt) {
    cutShort = attempt.onFailure(Cause.isInterruptedOnly(cause) ? Cause.interrupt(FiberId.none) : Cause.die(Cause.squash(cause)))
  } else if (held !== undefined) {
    slot.unit = undefined
    // Died between taking a unit and starting it: give it back.
    if (!held.finalized) run.ready.unshift(held)
  }
  return Effect.zipRight(runRest(slot), cutShort)
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
    // Spans only in a run that traces (spans.ts): otherwise the attempt runs as it is.
    const plain = makeAttempt(run, task, slot)
    const attempt = spans === undefined ? plain : Spans.traced(plain, spans, slot)
    // `interruptible`: a replacement worker is started from a finalizer and would inherit its
    // uninterruptibility.
    const worker = Effect.interruptible(workerLoop(run, source, slot, attempt)).pipe(
      Effect.onExit((exit) =>
        Effect.suspend(() => {
          run.active--
          run.slots.delete(slot)
          const settled = Exit.isFailure(exit) ? settleWorker(run, slot, attempt, exit.cause) : runRest(slot)
          return Effect.zipRight(
            settled,
            Effect.suspend(() => {
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
