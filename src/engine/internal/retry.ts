/**
 * What happens after a failed try: the item ends (skipped, not retryable, out of retries, asked to
 * wait longer than `maxRetryAfter`, or no time left before the deadline), or it waits for its retry
 * in a sleeper fiber — not in a worker, so its slot goes to the next item — and then joins the
 * `ready` queue. During a drain a retry is never taken from there: the item is left over.
 */
import { Duration, Effect, Option } from "effect"
import * as Budget from "../Budget.js"
import * as EngineMetrics from "../EngineMetrics.js"
import { errorTypeOf, messageOf, type TaskError } from "../Errors.js"
import * as RetryPolicy from "../RetryPolicy.js"
import { finalize } from "./outbox.js"
import { failure, itemError } from "./results.js"
import { counts, emitEvent, maxWaiting, wakeOne, type RunState, type Unit } from "./state.js"

const overCap = <I, A, E>(run: RunState<I, A, E>, waitMs: number) =>
  `the upstream asked to wait ${Math.ceil(waitMs / 1000)} s, longer than the ${Math.round((run.maxRetryAfterMs ?? 0) / 1000)} s allowed (maxRetryAfter)`

const scheduleRetry = <I, A, E>(run: RunState<I, A, E>, unit: Unit<I>, error: TaskError, delayMs: number): Effect.Effect<void> => {
  run.waiting++
  run.waitingUnits.add(unit)
  const sleeper = Effect.sleep(Duration.millis(delayMs)).pipe(
    Effect.zipRight(
      Effect.sync(() => {
        if (!run.waitingUnits.delete(unit)) return
        run.waiting--
        run.ready.push(unit)
        wakeOne(run)
        // A retry leaving the waiting room may also let a new item in.
        if (!run.exhausted && run.waiting < maxWaiting(run)) wakeOne(run)
      })
    ),
    Effect.interruptible
  )
  const cls = RetryPolicy.classOf(error)
  if (cls !== undefined) run.metrics.retryClass(cls).unsafeUpdate(1, EngineMetrics.noExtraTags)
  return Effect.zipRight(
    Effect.forkIn(sleeper, run.scope),
    Effect.all(
      [
        Effect.logDebug(`retrying in ${Math.round(delayMs)} ms: ${messageOf(error)}`).pipe(
          Effect.annotateLogs({
            item: unit.index,
            ...(unit.id === undefined ? {} : { itemId: unit.id }),
            attempt: unit.tries,
            error: errorTypeOf(error)
          })
        ),
        emitEvent(run, () => ({
          _tag: "ItemRetrying",
          runId: run.runId,
          index: unit.index,
          ...(unit.id === undefined ? {} : { id: unit.id }),
          attempt: unit.tries,
          error: itemError(error),
          delayMs,
          at: run.now(),
          counts: counts(run)
        }))
      ],
      { discard: true }
    )
  )
}

/** After a failed try: retry later, or end the item. Runs uninterruptibly. */
export const onError = <I, A, E>(
  run: RunState<I, A, E>,
  unit: Unit<I>,
  error: TaskError,
  at: number,
  admittedBy: Budget.Budget | undefined
): Effect.Effect<void> => {
  const { retry, whenBreakerOpen } = run.policy
  const maxRetryAfterMs = run.maxRetryAfterMs
  unit.lastError = error
  if (error._tag === "Skipped") {
    finalize(run, unit, failure(unit, "skipped", itemError(error), at))
    return Effect.void
  }
  const cls = RetryPolicy.classOf(error)
  const retryable = cls !== undefined && unit.tries <= retry.maxRetries && (cls !== "circuit_open" || whenBreakerOpen === "wait")
  if (!retryable) {
    finalize(run, unit, failure(unit, "failed", itemError(error), at))
    return Effect.void
  }
  // The upstream asked for a longer wait than `maxRetryAfter`: no retry, the item ends now and
  // says how long it was asked to wait (the caller decides whether to come back then).
  const stated = RetryPolicy.upstreamDelayMs(error)
  if (maxRetryAfterMs !== undefined && stated !== undefined && stated > maxRetryAfterMs) {
    finalize(run, unit, failure(unit, "failed", itemError(error, overCap(run, stated)), at))
    return Effect.void
  }
  const retryState = unit.retryState ?? (unit.retryState = {})
  return Effect.flatMap(RetryPolicy.nextDelay(retry, error, retryState, at), (delay) => {
    if (Option.isNone(delay)) {
      finalize(run, unit, failure(unit, "failed", itemError(error), at))
      return Effect.void
    }
    // The upstream asked everyone to wait: retry when the budget's shared pause ends, not on this item's own clock.
    const verdict = admittedBy === undefined ? undefined : Budget.verdictOf(error)
    const paused = verdict?._tag === "overload" && verdict.waitMs !== undefined ? (admittedBy?.cooldownRemaining() ?? 0) : 0
    // The shared pause (another call's answer may have made it longer than this one's) is capped too.
    if (maxRetryAfterMs !== undefined && paused > maxRetryAfterMs) {
      finalize(run, unit, failure(unit, "failed", itemError(error, overCap(run, paused), paused), at))
      return Effect.void
    }
    const wait = paused > 0 ? paused : delay.value
    if (at + wait >= run.deadlineAt) {
      finalize(run, unit, failure(unit, "failed", itemError(error, "no time left for a retry before the deadline"), at))
      return Effect.void
    }
    return scheduleRetry(run, unit, error, wait)
  })
}
