/**
 * One attempt of an item, built once per worker and re-run for every attempt it makes (allocating
 * these effects per attempt was a large share of the per-item overhead): admission by the run's
 * budget, the breaker, the rate limiter, then the task; `AttemptContext.guard` for the calls inside
 * the task; and the bookkeeping after it — the result, the breaker's permit, a retry.
 *
 * The worker runs it (worker.ts): `begin` starts the attempt and returns the effect to run,
 * `onSuccess`/`onFailure` account for it and return what is left to run — `Effect.void` itself in
 * the common case, which then costs the worker no effect at all. With nothing to wait for before the
 * call (no budget, no rate limiter, no observer, a closed breaker) `begin` returns the task's own
 * effect: every effect between the worker and the task was a measurable share of an immediate item.
 *
 * The attempt's timeout covers the call itself, not the waits for admission: its clock starts once
 * admitted and pauses while the task waits for a guarded call's admission. A drain turns back an
 * attempt that would start its call after the drain began.
 */
import { Cause, Effect, Option } from "effect"
import type * as Budget from "../Budget.js"
import { withCircuitBreaker, type Outcome } from "../CircuitBreaker.js"
import * as EngineMetrics from "../EngineMetrics.js"
import { AttemptTimeout, countsAgainstBreaker, errorTypeOf, type TaskError } from "../Errors.js"
import { finalize } from "./outbox.js"
import { failure, stoppedResult, success } from "./results.js"
import { onError } from "./retry.js"
import { counts, emitEvent, startCalling, stopCalling, wakeWatchdog, type RunState, type Slot, type Unit } from "./state.js"
import type { Task, Upstream } from "./types.js"

const noTags = EngineMetrics.noExtraTags

/** `AttemptContext.guard` for the attempt `slot` runs: admission (clock paused) → breaker → call. */
const guardFor = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>) => (upstream: Upstream) => {
  // Asking for a guard (before any call, e.g. before a shared login that may fail) says how this
  // task's calls are counted.
  if (slot.inAttempt && slot.unit !== undefined) slot.unit.usesGuard = true
  const b = upstream.budget
  const br = upstream.breaker
  const timedOut = () => slot.timedOut
  const hooks: Budget.Hooks = {
    onAdmit: () => {
      slot.budget = b
      if (slot.pausedLeft >= 0) {
        slot.attemptDeadline = run.now() + slot.pausedLeft
        slot.pausedLeft = -1
        startCalling(run, slot)
        wakeWatchdog(run)
      }
    },
    timedOut,
    ...(run.maxRetryAfterMs === undefined ? {} : { maxCooldownMs: run.maxRetryAfterMs })
  }
  return <B, R>(call: Effect.Effect<B, TaskError, R>): Effect.Effect<B, TaskError, R> => {
    // Counted as it goes out: a call the budget or the breaker turned away was never made.
    const counted = Effect.suspend(() => {
      if (slot.inAttempt && slot.unit !== undefined) slot.unit.guardedCalls++
      return call
    })
    const guarded =
      br === undefined ? counted : withCircuitBreaker(counted, br, { isFailure: countsAgainstBreaker, interruptionIsFailure: timedOut })
    if (b === undefined) return guarded
    const admit = b.admit(run.tenant, hooks)(guarded)
    return Effect.suspend(() => {
      // Waiting for admission: the attempt's timeout stops running and it is not in flight.
      if (slot.inAttempt && !slot.timedOut && slot.pausedLeft < 0 && Number.isFinite(slot.attemptDeadline)) {
        slot.pausedLeft = Math.max(0, slot.attemptDeadline - run.now())
        slot.attemptDeadline = Number.POSITIVE_INFINITY
        stopCalling(run, slot)
      }
      return admit
    })
  }
}

/** The attempt's call starts at `at`: it is in flight, and its timeout runs. */
const startClock = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>, at: number): void => {
  startCalling(run, slot)
  slot.attemptDeadline = at + run.timeoutMs
  // Without a timeout (`Duration.infinity`) the watchdog has nothing to wait for: woken for every
  // attempt, it scanned every slot per item (W5 ledger: more than the timeout's whole cost).
  if (slot.attemptDeadline !== Number.POSITIVE_INFINITY) wakeWatchdog(run)
}

/**
 * The call for the unit `slot` holds, through the run's budget, breaker and rate limiter: called as
 * the attempt begins, it returns the effect to run (the task's own when nothing stands before it).
 */
const makeCall = <I, A, E, R>(
  run: RunState<I, A, E>,
  task: Task<I, A, R>,
  slot: Slot<I>
): ((unit: Unit<I>) => Effect.Effect<A, TaskError, R>) => {
  const { breaker, rateLimiter, budget } = run.policy
  const started = emitEvent(run, () => ({
    _tag: "ItemStarted",
    runId: run.runId,
    index: slot.unit?.index ?? -1,
    ...(slot.unit?.id === undefined ? {} : { id: slot.unit.id }),
    attempt: slot.unit?.tries ?? 0,
    at: run.now(),
    counts: counts(run)
  }))
  const timedOut = () => slot.timedOut
  const guard = guardFor(run, slot)
  /** `at`: the time, when the caller has just read the clock. */
  const callNow = (unit: Unit<I>, at: number | undefined): Effect.Effect<A, TaskError, R> => {
    if (run.draining) {
      // Admitted (or past the rate limiter) after a drain began: the call does not go out.
      slot.turnedBack = true
      return Effect.interrupt
    }
    unit.attempts++
    // The timeout covers the call itself, not the wait for admission, the breaker or the rate limiter.
    if (!slot.calling) startClock(run, slot, at ?? run.now())
    try {
      return task(unit.item, { index: unit.index, id: unit.id, attempt: unit.attempts, timedOut, guard })
    } catch (defect) {
      // What `Effect.suspend` makes of a task that throws instead of returning an effect.
      return Effect.die(defect)
    }
  }
  const call = Effect.suspend(() => {
    const unit = slot.unit
    return unit === undefined ? Effect.dieMessage("internal: attempt without an item") : callNow(unit, undefined)
  })
  const limited = rateLimiter === undefined ? call : rateLimiter(call)
  const body = run.onEvent === undefined ? limited : Effect.zipRight(started, limited)
  const breakered =
    breaker === undefined
      ? body
      : Effect.flatMap(breaker.acquire, (permit) => {
          slot.permit = permit
          return body
        })
  const admitted = () => {
    slot.budget = budget
  }
  const general =
    budget === undefined
      ? breakered
      : budget.admit(run.tenant, {
          onAdmit: admitted,
          timedOut,
          ...(run.maxRetryAfterMs === undefined ? {} : { maxCooldownMs: run.maxRetryAfterMs })
        })(breakered)
  if (budget !== undefined || rateLimiter !== undefined || run.onEvent !== undefined) return () => general
  // Called as the attempt begins, at `slot.attemptStart`.
  if (breaker === undefined) return (unit) => callNow(unit, slot.attemptStart)
  return (unit) => {
    const permit = breaker.tryAcquireNow()
    if (permit === undefined) return general
    slot.permit = permit
    return callNow(unit, slot.attemptStart)
  }
}

const release = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>, outcome: Outcome, at: number): Effect.Effect<void> => {
  const breaker = run.policy.breaker
  const permit = slot.permit
  if (breaker === undefined || permit === undefined) return Effect.void
  slot.permit = undefined
  return breaker.releaseNow(permit, outcome, at)
}

/** Ends the attempt's bookkeeping; returns the time it ended. */
const endAttempt = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>): number => {
  stopCalling(run, slot)
  slot.inAttempt = false
  slot.pausedLeft = -1
  slot.unit = undefined
  const at = run.now()
  if (slot.permit !== undefined || run.policy.breaker === undefined) {
    run.metrics.attemptDuration.unsafeUpdate((at - slot.attemptStart) / 1000, noTags)
  }
  return at
}

const afterFailure = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>, cause: Cause.Cause<TaskError>): Effect.Effect<void> => {
  const unit = slot.unit
  if (unit === undefined) return Effect.void
  const at = endAttempt(run, slot)
  let error: TaskError
  if (Cause.isInterruptedOnly(cause)) {
    if (slot.timedOut) {
      error = new AttemptTimeout({ message: `attempt timed out after ${Math.round(run.timeoutMs)} ms` })
    } else {
      const reason = run.stopReason
      if (reason === "deadline" || reason === "cancelled") {
        finalize(run, unit, stoppedResult(unit, reason, at))
      } else if (reason === "drained" || slot.turnedBack) {
        slot.turnedBack = false
        run.left.push(unit)
      } else if (!run.teardown.started) {
        // Neither a timeout nor a stop: the task interrupted itself. Not an upstream condition.
        finalize(run, unit, failure(unit, "failed", { type: "unexpected", message: "the task interrupted itself", retryable: false }, at))
      }
      return release(run, slot, "neutral", at)
    }
  } else {
    const failureOpt = Cause.failureOption(cause)
    if (Option.isNone(failureOpt)) {
      // A defect in the task: not an upstream condition, never retried.
      const message = Cause.pretty(cause).split("\n")[0] ?? "unexpected error"
      run.metrics.attemptOutcome("unexpected").unsafeUpdate(1, noTags)
      finalize(run, unit, failure(unit, "failed", { type: "unexpected", message, retryable: false }, at))
      return release(run, slot, "neutral", at)
    }
    error = failureOpt.value
  }
  const type = errorTypeOf(error)
  run.metrics.attemptOutcome(type).unsafeUpdate(1, noTags)
  if (type === "timeout") run.metrics.timeouts.unsafeUpdate(1, noTags)
  return Effect.zipRight(
    release(run, slot, countsAgainstBreaker(error) ? "failure" : "neutral", at),
    onError(run, unit, error, at, slot.budget)
  )
}

/** One attempt of whatever unit its worker holds, in three steps (see the header). */
export interface Attempt<A, R> {
  /** Starts the attempt of the unit the slot holds; returns the effect the worker runs for it. */
  readonly begin: () => Effect.Effect<A, TaskError, R>
  /** Accounts for the attempt; returns what is left to run (`Effect.void` when nothing). */
  readonly onSuccess: (value: A) => Effect.Effect<void>
  readonly onFailure: (cause: Cause.Cause<TaskError>) => Effect.Effect<void>
}

/** One attempt of the unit `slot` holds, then its bookkeeping. Built once per worker. */
export const makeAttempt = <I, A, E, R>(run: RunState<I, A, E>, task: Task<I, A, R>, slot: Slot<I>): Attempt<A, R> => {
  const callFor = makeCall(run, task, slot)
  const successes = run.metrics.attemptOutcome("success")
  const onFailure = (cause: Cause.Cause<TaskError>) => afterFailure(run, slot, cause)
  const onSuccess = (value: A): Effect.Effect<void> => {
    const unit = slot.unit
    if (unit === undefined) return Effect.void
    const at = endAttempt(run, slot)
    successes.unsafeUpdate(1, noTags)
    finalize(run, unit, success(unit, value, at))
    return release(run, slot, "success", at)
  }
  const begin = (): Effect.Effect<A, TaskError, R> => {
    const unit = slot.unit
    if (unit === undefined) return Effect.dieMessage("internal: attempt without an item")
    unit.tries++
    const start = run.now()
    if (unit.firstStart < 0) unit.firstStart = start
    slot.attemptStart = start
    slot.inAttempt = true
    slot.timedOut = false
    slot.budget = undefined
    if (run.direct) {
      startClock(run, slot, start)
    } else {
      // The clock starts once admitted (see makeCall).
      slot.attemptDeadline = Number.POSITIVE_INFINITY
    }
    return callFor(unit)
  }
  return { begin, onSuccess, onFailure }
}
