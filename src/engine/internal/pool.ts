/**
 * The engine's worker pool. `maxConcurrent` long-lived worker fibers pull items from the source, so
 * a slot is refilled the moment an attempt ends (work-conserving, no batches) and no fiber is forked
 * per item. A retry waiting for its backoff sits in a sleeper fiber, not in a worker, so its slot goes
 * to the next item.
 *
 * Per-attempt timeouts are enforced by one watchdog fiber per run that interrupts the worker whose
 * attempt ran past its deadline (the task's AbortSignal fires), and a replacement worker takes the
 * slot. That keeps the hot path free of the race/fork that `Effect.timeout` costs per call.
 *
 * Finished results go into an outbox that one flusher fiber hands over in batches, so a worker that
 * dies (timed out, resized away) never takes a finished result with it; whatever is left when the run
 * stops is handed over by the run itself.
 */
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Option,
  Scope,
  Stream
} from "effect"
import type { Adjustable } from "../Adjustable.js"
import { isAdjustable } from "../Adjustable.js"
import * as Budget from "../Budget.js"
import { withCircuitBreaker, type CircuitBreaker, type Outcome, type Permit } from "../CircuitBreaker.js"
import * as EngineMetrics from "../EngineMetrics.js"
import {
  AttemptTimeout,
  countsAgainstBreaker,
  errorTypeOf,
  isRetryableType,
  messageOf,
  type ErrorType,
  type TaskError
} from "../Errors.js"
import type { ItemError, ItemResult, ItemStatus } from "../ItemResult.js"
import type { Policy } from "../Policy.js"
import type { Counts, ProgressEvent, RunSummary, StopReason } from "../Progress.js"
import * as RetryPolicy from "../RetryPolicy.js"
import type { Source } from "./source.js"

/** What a task learns about the attempt it is running. */
export interface AttemptContext {
  readonly index: number
  readonly id: string | undefined
  /** 1 for the first attempt. */
  readonly attempt: number
  /**
   * Whether this attempt has been cut by its timeout. Lets code that guards a call itself (e.g. with
   * `withCircuitBreaker` inside the task) count that interruption as a timeout rather than a cancel.
   */
  readonly timedOut: () => boolean
  /**
   * The attempt pipeline for one upstream call inside the task, for tasks that call several
   * upstreams or must do something first (a shared login): admission by the upstream's budget
   * (fair between runs; the attempt's timeout is paused and the attempt is not in flight while it
   * waits), then its breaker, then the call. `Policy.budget`/`Policy.breaker` do the same around
   * the whole task.
   */
  readonly guard: (upstream: Upstream) => <A, R>(call: Effect.Effect<A, TaskError, R>) => Effect.Effect<A, TaskError, R>
}

/** What guards calls to one upstream. */
export interface Upstream {
  readonly budget?: Budget.Budget | undefined
  readonly breaker?: CircuitBreaker | undefined
}

export type Task<I, A, R> = (item: I, context: AttemptContext) => Effect.Effect<A, TaskError, R>

export interface ExecuteOptions<I, A> {
  readonly runId: string
  readonly idOf: ((item: I, index: number) => string) | undefined
  /** Hands finished results over, in batches (one per flush); may back-pressure the run. */
  readonly onResults: (results: ReadonlyArray<ItemResult<A>>) => Effect.Effect<void>
  /** A synchronous stand-in for `onResults`, used when there is no `onEvent` (the plain `run`). */
  readonly collect?: (result: ItemResult<A>) => void
  readonly onEvent: ((event: ProgressEvent<A>) => Effect.Effect<void>) | undefined
  readonly cancelled: Deferred.Deferred<void> | undefined
  /** Completed with the grace period when the run is to drain (see `RunControl.drain`). */
  readonly draining: Deferred.Deferred<Duration.Duration> | undefined
}

interface Unit<I> {
  readonly index: number
  readonly item: I
  readonly id: string | undefined
  /** Runs of the task (admitted by the breaker): the attempt number it is told. */
  attempts: number
  /** Calls made through `AttemptContext.guard` that went out (past their budget and breaker). */
  guardedCalls: number
  /** Whether the task asked for `guard` in any of its runs: then its calls are its guarded calls. */
  usesGuard: boolean
  /** Tries including those the breaker turned away; bounded by maxRetries + 1. */
  tries: number
  firstStart: number
  lastError: TaskError | undefined
  finalized: boolean
  readonly retryState: RetryPolicy.RetryState
}

interface Slot<I> {
  fiber: Fiber.RuntimeFiber<void, unknown> | undefined
  /** The unit this worker holds, from the moment it takes it until its attempt is accounted for. */
  unit: Unit<I> | undefined
  inAttempt: boolean
  attemptStart: number
  attemptDeadline: number
  timedOut: boolean
  permit: Permit | undefined
  /** Counted in `inFlight`: the attempt is calling, not waiting for admission. */
  calling: boolean
  /** The budget that admitted the attempt's last call, whose cooldown a rate-limited retry waits out. */
  budget: Budget.Budget | undefined
  /** While waiting for admission inside the task: the attempt's time left (its clock is paused); -1 otherwise. */
  pausedLeft: number
  /** The attempt was turned back by a drain before its call: its item is left over, not failed. */
  turnedBack: boolean
}

/** Counts right after an item finished, for its `ItemFinished` event (kept only with observers). */
interface Progress {
  readonly counts: Counts
  readonly etaMs: number | undefined
}

const YIELD_EVERY = 64

/** Suspends until woken through `waiters` (each waiter is called at most once). */
const parkIn = (waiters: Array<() => void>): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const wake = () => resume(Effect.void)
    waiters.push(wake)
    return Effect.sync(() => {
      const i = waiters.indexOf(wake)
      if (i >= 0) waiters.splice(i, 1)
    })
  })

/**
 * Suspends until the wake-up function handed to `register` is called. `register(undefined)` runs
 * if the wait is interrupted, so a stale wake-up is never left behind.
 */
const park = (register: (wake: (() => void) | undefined) => void): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    register(() => resume(Effect.void))
    return Effect.sync(() => register(undefined))
  })

const stopStatus = (
  reason: "deadline" | "cancelled"
): { status: Exclude<ItemStatus, "succeeded">; type: ErrorType; message: string } =>
  reason === "deadline"
    ? { status: "failed", type: "deadline_exceeded", message: "the batch deadline passed before this item finished" }
    : { status: "cancelled", type: "cancelled", message: "the run was cancelled before this item finished" }

/**
 * Run every item of `source` through `task` under `policy`. Never fails because an item failed;
 * fails only if the source itself fails.
 */
export const execute = <I, A, E, R, RS>(
  source: Source<I, E, RS>,
  task: Task<I, A, R>,
  policy: Policy,
  options: ExecuteOptions<I, A>
): Effect.Effect<RunSummary, E, R | RS> =>
  Effect.flatMap(Scope.make(), (scope) =>
    Effect.flatMap(Effect.clock, (clock) => {
      const teardown = { started: false }
      return runIn(scope, clock, teardown, source, task, policy, options).pipe(
        Effect.onExit((exit) =>
          Effect.suspend(() => {
            teardown.started = true
            return Scope.close(scope, Exit.asVoid(exit))
          })
        )
      )
    })
  )

const runIn = <I, A, E, R, RS>(
  scope: Scope.CloseableScope,
  clock: Clock.Clock,
  /** Set when the run itself is interrupted from outside, so nobody will read the results. */
  teardown: { readonly started: boolean },
  source: Source<I, E, RS>,
  task: Task<I, A, R>,
  policy: Policy,
  options: ExecuteOptions<I, A>
): Effect.Effect<RunSummary, E, R | RS> =>
  Effect.gen(function* () {
    const now = () => clock.unsafeCurrentTimeMillis()
    const metrics = EngineMetrics.forRun(policy.name)
    const { runId, onEvent, idOf } = options
    // Without observers a result needs no effect to hand over: store it synchronously.
    const collect = onEvent === undefined ? options.collect : undefined
    const retry = policy.retry
    const breaker = policy.breaker
    const waitWhenOpen = policy.whenBreakerOpen === "wait"
    const rateLimiter = policy.rateLimiter
    const budget = policy.budget
    const tenant = policy.tenant ?? Budget.tenant(runId, policy.priority ?? "normal")
    // Nothing stands between the worker and the call: the attempt's clock starts at once.
    const direct = rateLimiter === undefined && breaker === undefined && budget === undefined

    const stopped = yield* Deferred.make<StopReason, E>()
    const startedAt = now()
    // The earlier of the deadline from this run's start and a fixed moment (a resumed job keeps the one it began with).
    const deadlineAt = Math.min(
      policy.deadline === undefined ? Number.POSITIVE_INFINITY : startedAt + Duration.toMillis(policy.deadline),
      policy.deadlineAt ?? Number.POSITIVE_INFINITY
    )
    const maxRetryAfterMs = RetryPolicy.maxRetryAfterMs(policy.retry)

    // ---- settings that may change mid-run
    let limit = isAdjustable(policy.maxConcurrent) ? yield* policy.maxConcurrent.get : policy.maxConcurrent
    limit = Math.max(1, Math.floor(limit))
    const timeoutSetting: Adjustable<Duration.Duration> | Duration.DurationInput = policy.attemptTimeout
    let timeoutMs = isAdjustable(timeoutSetting)
      ? Duration.toMillis(yield* timeoutSetting.get)
      : Duration.toMillis(timeoutSetting)
    const maxWaiting = () => policy.maxWaiting ?? 4 * limit

    // ---- run state (touched only inside synchronous sections, so fibers never see it half-updated)
    let active = 0
    let inFlight = 0
    let waiting = 0
    let outstanding = 0
    let pulling = 0
    let exhausted = false
    let nextIndex = 0
    let stopReason: StopReason | undefined = undefined
    /** Set by a drain: no unit is taken and no call starts; the run stops once none is calling. */
    let draining = false
    /** Units a drain left without a result (interrupted or turned back mid-attempt). */
    const left: Array<Unit<I>> = []
    let completed = 0
    let succeeded = 0
    let failed = 0
    let cancelled = 0
    let skipped = 0
    const ready: Array<Unit<I>> = []
    const waitingUnits = new Set<Unit<I>>()
    const slots = new Set<Slot<I>>()
    const idle: Array<() => void> = []
    const outbox: Array<ItemResult<A>> = []
    /** Parallel to `outbox` when there is an `onEvent` observer. */
    const outboxProgress: Array<Progress> = []
    let unemitted = 0

    const counts = (): Counts => {
      const c = { completed, succeeded, failed, cancelled, skipped, inFlight, waiting }
      return source.total === undefined ? c : { total: source.total, ...c }
    }
    const etaMs = (): number | undefined => {
      if (source.total === undefined || completed === 0) return undefined
      return Math.round(((now() - startedAt) / completed) * (source.total - completed))
    }
    const emitEvent = (event: () => ProgressEvent<A>): Effect.Effect<void> =>
      onEvent === undefined ? Effect.void : Effect.suspend(() => onEvent(event()))

    const stop = (reason: StopReason) => {
      if (stopReason !== undefined) return
      stopReason = reason
      Deferred.unsafeDone(stopped, Exit.succeed(reason))
    }
    const checkDone = () => {
      if (exhausted && pulling === 0 && outstanding === 0 && unemitted === 0) stop("completed")
    }
    const wakeOne = () => {
      const resume = idle.shift()
      if (resume !== undefined) resume()
    }
    const wakeAll = () => {
      const all = idle.splice(0, idle.length)
      for (const resume of all) resume()
    }
    const idleWait = parkIn(idle)

    // ---- results
    const finalize = (unit: Unit<I>, result: ItemResult<A>): void => {
      if (unit.finalized) return
      unit.finalized = true
      outstanding--
      completed++
      switch (result.status) {
        case "succeeded":
          succeeded++
          break
        case "failed":
          failed++
          break
        case "cancelled":
          cancelled++
          break
        case "skipped":
          skipped++
          break
      }
      if (collect !== undefined) {
        collect(result)
        return
      }
      unemitted++
      outbox.push(result)
      if (onEvent !== undefined) outboxProgress.push({ counts: counts(), etaMs: etaMs() })
      wakeFlusher()
    }
    const durationOf = (unit: Unit<I>, at: number) => (unit.firstStart < 0 ? 0 : at - unit.firstStart)
    /**
     * Calls actually made for the item. A task that asks for `AttemptContext.guard` made exactly its
     * guarded calls that went out — not those a budget or breaker turned away, nor a call it shares
     * with other items outside the guard (a forum login); a task that does not is one call per run.
     */
    const callsOf = (unit: Unit<I>) => (unit.usesGuard ? unit.guardedCalls : unit.attempts)
    const success = (unit: Unit<I>, value: A, at: number): ItemResult<A> =>
      unit.id === undefined
        ? { index: unit.index, status: "succeeded", attempts: callsOf(unit), durationMs: durationOf(unit, at), value }
        : {
            index: unit.index,
            id: unit.id,
            status: "succeeded",
            attempts: callsOf(unit),
            durationMs: durationOf(unit, at),
            value
          }
    const failure = (
      unit: Unit<I>,
      status: Exclude<ItemStatus, "succeeded">,
      error: ItemError,
      at: number
    ): ItemResult<A> =>
      unit.id === undefined
        ? { index: unit.index, status, attempts: callsOf(unit), durationMs: durationOf(unit, at), error }
        : { index: unit.index, id: unit.id, status, attempts: callsOf(unit), durationMs: durationOf(unit, at), error }
    const itemError = (error: TaskError, note?: string, retryAfterMs?: number): ItemError => {
      const type = errorTypeOf(error)
      const message = note === undefined ? messageOf(error) : `${messageOf(error)} (${note})`
      // A 503 may say when to come back too; an open breaker says when it will let a probe through.
      const after =
        error._tag === "RateLimited" || error._tag === "CircuitOpen" || error._tag === "Transient" ? error.retryAfter : undefined
      const ms = retryAfterMs ?? (after === undefined ? undefined : Duration.toMillis(after))
      return ms === undefined
        ? { type, message, retryable: isRetryableType(type) }
        : { type, message, retryable: isRetryableType(type), retryAfterMs: Math.round(ms) }
    }
    const stoppedResult = (unit: Unit<I>, reason: "deadline" | "cancelled", at: number): ItemResult<A> => {
      const s = stopStatus(reason)
      const last = unit.lastError === undefined ? "" : `; last error: ${messageOf(unit.lastError)}`
      return failure(unit, s.status, { type: s.type, message: s.message + last, retryable: true }, at)
    }

    // ---- handing results over
    // Workers only push finished results into the outbox; one flusher fiber hands them over in
    // batches as soon as the workers yield. Emitting from each worker cost more than the rest of
    // an item, and a full consumer now stops the workers (at `maxOutbox`) instead of each of them.
    const maxOutbox = Math.max(64, 4 * limit)
    let flusherIdle: (() => void) | undefined = undefined
    let inHand: ReadonlyArray<ItemResult<A>> = []
    let inHandProgress: ReadonlyArray<Progress> = []
    const blockedOnOutbox: Array<() => void> = []
    function wakeFlusher() {
      const resume = flusherIdle
      if (resume !== undefined) {
        flusherIdle = undefined
        resume()
      }
    }
    const handOver = (results: ReadonlyArray<ItemResult<A>>, progress: ReadonlyArray<Progress>): Effect.Effect<void> => {
      const delivered = Effect.suspend(() => options.onResults(results))
      if (onEvent === undefined) return delivered
      return Effect.zipRight(
        delivered,
        Effect.forEach(
          results,
          (result, i) =>
            emitEvent(() => {
              const p = progress[i]
              const base = { _tag: "ItemFinished" as const, runId, result, at: now(), counts: p?.counts ?? counts() }
              return p?.etaMs === undefined ? base : { ...base, etaMs: p.etaMs }
            }),
          { discard: true }
        )
      )
    }
    const flusher: Effect.Effect<void> = Effect.suspend(() => {
      if (outbox.length === 0) {
        return Effect.zipRight(
          park((wake) => {
            flusherIdle = wake
          }),
          flusher
        )
      }
      inHand = outbox.splice(0, outbox.length)
      inHandProgress = outboxProgress.splice(0, outboxProgress.length)
      return Effect.zipRight(
        handOver(inHand, inHandProgress),
        Effect.suspend(() => {
          unemitted -= inHand.length
          inHand = []
          inHandProgress = []
          const blocked = blockedOnOutbox.splice(0, blockedOnOutbox.length)
          for (const resume of blocked) resume()
          checkDone()
          return flusher
        })
      )
    })
    const outboxFull = parkIn(blockedOnOutbox)

    // ---- one attempt, and what happens after it
    const newUnit = (item: I): Unit<I> => {
      const index = nextIndex++
      outstanding++
      return {
        index,
        item,
        id: idOf === undefined ? undefined : idOf(item, index),
        attempts: 0,
        guardedCalls: 0,
        usesGuard: false,
        tries: 0,
        firstStart: -1,
        lastError: undefined,
        finalized: false,
        retryState: {}
      }
    }

    /**
     * The call for whatever unit `slot` holds. Built once per worker and re-run for every attempt:
     * allocating these effects per attempt was a large share of the per-item overhead.
     */
    const makeCall = (slot: Slot<I>): Effect.Effect<A, TaskError, R> => {
      const started = emitEvent(() => ({
        _tag: "ItemStarted",
        runId,
        index: slot.unit?.index ?? -1,
        ...(slot.unit?.id === undefined ? {} : { id: slot.unit.id }),
        attempt: slot.unit?.tries ?? 0,
        at: now(),
        counts: counts()
      }))
      const timedOut = () => slot.timedOut
      const guard = guardFor(slot)
      const run = Effect.suspend(() => {
        const unit = slot.unit
        if (unit === undefined) return Effect.dieMessage("internal: attempt without an item")
        if (draining) {
          // Admitted (or past the rate limiter) after a drain began: the call does not go out.
          slot.turnedBack = true
          return Effect.interrupt
        }
        unit.attempts++
        // The timeout covers the call itself, not the wait for admission, the breaker or the rate limiter.
        if (!slot.calling) {
          startCalling(slot)
          slot.attemptDeadline = now() + timeoutMs
          wakeWatchdog()
        }
        return task(unit.item, { index: unit.index, id: unit.id, attempt: unit.attempts, timedOut, guard })
      })
      const limited = rateLimiter === undefined ? run : rateLimiter(run)
      const body = onEvent === undefined ? limited : Effect.zipRight(started, limited)
      const breakered =
        breaker === undefined
          ? body
          : Effect.flatMap(breaker.acquire, (permit) => {
              slot.permit = permit
              return body
            })
      if (budget === undefined) return breakered
      const admitted = () => {
        slot.budget = budget
      }
      return budget.admit(tenant, {
        onAdmit: admitted,
        timedOut,
        ...(maxRetryAfterMs === undefined ? {} : { maxCooldownMs: maxRetryAfterMs })
      })(breakered)
    }

    const startCalling = (slot: Slot<I>) => {
      slot.calling = true
      inFlight++
      metrics.inFlight.unsafeUpdate(inFlight, noTags)
    }
    const stopCalling = (slot: Slot<I>) => {
      if (!slot.calling) return
      slot.calling = false
      inFlight--
      metrics.inFlight.unsafeUpdate(inFlight, noTags)
      if (draining && inFlight === 0) stop("drained")
    }

    /** `AttemptContext.guard` for the attempt `slot` runs: admission (clock paused) → breaker → call. */
    const guardFor = (slot: Slot<I>) => (upstream: Upstream) => {
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
            slot.attemptDeadline = now() + slot.pausedLeft
            slot.pausedLeft = -1
            startCalling(slot)
            wakeWatchdog()
          }
        },
        timedOut,
        ...(maxRetryAfterMs === undefined ? {} : { maxCooldownMs: maxRetryAfterMs })
      }
      return <A, R>(call: Effect.Effect<A, TaskError, R>): Effect.Effect<A, TaskError, R> => {
        // Counted as it goes out: a call the budget or the breaker turned away was never made.
        const counted = Effect.suspend(() => {
          if (slot.inAttempt && slot.unit !== undefined) slot.unit.guardedCalls++
          return call
        })
        const guarded = br === undefined ? counted : withCircuitBreaker(counted, br, { isFailure: countsAgainstBreaker, interruptionIsFailure: timedOut })
        if (b === undefined) return guarded
        const admit = b.admit(tenant, hooks)(guarded)
        return Effect.suspend(() => {
          // Waiting for admission: the attempt's timeout stops running and it is not in flight.
          if (slot.inAttempt && !slot.timedOut && slot.pausedLeft < 0 && Number.isFinite(slot.attemptDeadline)) {
            slot.pausedLeft = Math.max(0, slot.attemptDeadline - now())
            slot.attemptDeadline = Number.POSITIVE_INFINITY
            stopCalling(slot)
          }
          return admit
        })
      }
    }

    const scheduleRetry = (unit: Unit<I>, error: TaskError, delayMs: number): Effect.Effect<void> => {
      waiting++
      waitingUnits.add(unit)
      const sleeper = Effect.sleep(Duration.millis(delayMs)).pipe(
        Effect.zipRight(
          Effect.sync(() => {
            if (!waitingUnits.delete(unit)) return
            waiting--
            ready.push(unit)
            wakeOne()
            // A retry leaving the waiting room may also let a new item in.
            if (!exhausted && waiting < maxWaiting()) wakeOne()
          })
        ),
        Effect.interruptible
      )
      const cls = RetryPolicy.classOf(error)
      if (cls !== undefined) metrics.retryClass(cls).unsafeUpdate(1, noTags)
      return Effect.zipRight(
        Effect.forkIn(sleeper, scope),
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
            emitEvent(() => ({
              _tag: "ItemRetrying",
              runId,
              index: unit.index,
              ...(unit.id === undefined ? {} : { id: unit.id }),
              attempt: unit.tries,
              error: itemError(error),
              delayMs,
              at: now(),
              counts: counts()
            }))
          ],
          { discard: true }
        )
      )
    }

    const overCap = (waitMs: number) =>
      `the upstream asked to wait ${Math.ceil(waitMs / 1000)} s, longer than the ${Math.round((maxRetryAfterMs ?? 0) / 1000)} s allowed (maxRetryAfter)`

    /** After a failed try: retry later, or end the item. Runs uninterruptibly. */
    const onError = (unit: Unit<I>, error: TaskError, at: number, admittedBy: Budget.Budget | undefined): Effect.Effect<void> => {
      unit.lastError = error
      if (error._tag === "Skipped") {
        finalize(unit, failure(unit, "skipped", itemError(error), at))
        return Effect.void
      }
      const cls = RetryPolicy.classOf(error)
      const retryable =
        cls !== undefined && unit.tries <= retry.maxRetries && (cls !== "circuit_open" || waitWhenOpen)
      if (!retryable) {
        finalize(unit, failure(unit, "failed", itemError(error), at))
        return Effect.void
      }
      // The upstream asked for a longer wait than `maxRetryAfter`: no retry, the item ends now and
      // says how long it was asked to wait (the caller decides whether to come back then).
      const stated = RetryPolicy.upstreamDelayMs(error)
      if (maxRetryAfterMs !== undefined && stated !== undefined && stated > maxRetryAfterMs) {
        finalize(unit, failure(unit, "failed", itemError(error, overCap(stated)), at))
        return Effect.void
      }
      return Effect.flatMap(RetryPolicy.nextDelay(retry, error, unit.retryState, at), (delay) => {
        if (Option.isNone(delay)) {
          finalize(unit, failure(unit, "failed", itemError(error), at))
          return Effect.void
        }
        // The upstream asked everyone to wait: retry when the budget's shared pause ends, not on this item's own clock.
        const verdict = admittedBy === undefined ? undefined : Budget.verdictOf(error)
        const paused = verdict?._tag === "overload" && verdict.waitMs !== undefined ? (admittedBy?.cooldownRemaining() ?? 0) : 0
        // The shared pause (another call's answer may have made it longer than this one's) is capped too.
        if (maxRetryAfterMs !== undefined && paused > maxRetryAfterMs) {
          finalize(unit, failure(unit, "failed", itemError(error, overCap(paused), paused), at))
          return Effect.void
        }
        const wait = paused > 0 ? paused : delay.value
        if (at + wait >= deadlineAt) {
          finalize(unit, failure(unit, "failed", itemError(error, "no time left for a retry before the deadline"), at))
          return Effect.void
        }
        return scheduleRetry(unit, error, wait)
      })
    }

    const release = (slot: Slot<I>, outcome: Outcome, at: number): Effect.Effect<void> => {
      const permit = slot.permit
      if (breaker === undefined || permit === undefined) return Effect.void
      slot.permit = undefined
      return breaker.release(permit, outcome, at)
    }

    const noTags = EngineMetrics.noExtraTags
    const successes = metrics.attemptOutcome("success")
    /** Ends the attempt's bookkeeping; returns the time it ended. */
    const endAttempt = (slot: Slot<I>): number => {
      stopCalling(slot)
      slot.inAttempt = false
      slot.pausedLeft = -1
      slot.unit = undefined
      const at = now()
      if (slot.permit !== undefined || breaker === undefined) {
        metrics.attemptDuration.unsafeUpdate((at - slot.attemptStart) / 1000, noTags)
      }
      return at
    }
    const afterSuccess = (slot: Slot<I>, value: A): Effect.Effect<void> => {
      const unit = slot.unit
      if (unit === undefined) return Effect.void
      const at = endAttempt(slot)
      successes.unsafeUpdate(1, noTags)
      finalize(unit, success(unit, value, at))
      return release(slot, "success", at)
    }
    const afterFailure = (slot: Slot<I>, cause: Cause.Cause<TaskError>): Effect.Effect<void> => {
      const unit = slot.unit
      if (unit === undefined) return Effect.void
      const at = endAttempt(slot)
      let error: TaskError
      if (Cause.isInterruptedOnly(cause)) {
        if (slot.timedOut) {
          error = new AttemptTimeout({ message: `attempt timed out after ${Math.round(timeoutMs)} ms` })
        } else {
          if (stopReason === "deadline" || stopReason === "cancelled") {
            finalize(unit, stoppedResult(unit, stopReason, at))
          } else if (stopReason === "drained" || slot.turnedBack) {
            slot.turnedBack = false
            left.push(unit)
          } else if (!teardown.started) {
            // Neither a timeout nor a stop: the task interrupted itself. Not an upstream condition.
            finalize(unit, failure(unit, "failed", { type: "unexpected", message: "the task interrupted itself", retryable: false }, at))
          }
          return release(slot, "neutral", at)
        }
      } else {
        const failureOpt = Cause.failureOption(cause)
        if (Option.isNone(failureOpt)) {
          // A defect in the task: not an upstream condition, never retried.
          const message = Cause.pretty(cause).split("\n")[0] ?? "unexpected error"
          metrics.attemptOutcome("unexpected").unsafeUpdate(1, noTags)
          finalize(unit, failure(unit, "failed", { type: "unexpected", message, retryable: false }, at))
          return release(slot, "neutral", at)
        }
        error = failureOpt.value
      }
      const type = errorTypeOf(error)
      metrics.attemptOutcome(type).unsafeUpdate(1, noTags)
      if (type === "timeout") metrics.timeouts.unsafeUpdate(1, noTags)
      return Effect.zipRight(release(slot, countsAgainstBreaker(error) ? "failure" : "neutral", at), onError(unit, error, at, slot.budget))
    }

    /** One attempt of the unit `slot` holds, then its bookkeeping. Built once per worker. */
    const makeAttempt = (slot: Slot<I>): Effect.Effect<void, never, R> => {
      const call = makeCall(slot)
      const onFailure = (cause: Cause.Cause<TaskError>) => afterFailure(slot, cause)
      const onSuccess = (value: A) => afterSuccess(slot, value)
      return Effect.uninterruptibleMask((restore) => {
        const unit = slot.unit
        if (unit === undefined) return Effect.void
        unit.tries++
        const start = now()
        if (unit.firstStart < 0) unit.firstStart = start
        slot.attemptStart = start
        slot.inAttempt = true
        slot.timedOut = false
        slot.budget = undefined
        if (direct) {
          slot.attemptDeadline = start + timeoutMs
          startCalling(slot)
          wakeWatchdog()
        } else {
          // The clock starts once admitted (see makeCall).
          slot.attemptDeadline = Number.POSITIVE_INFINITY
        }
        return Effect.matchCauseEffect(restore(call), { onFailure, onSuccess })
      })
    }

    // ---- workers
    const workerLoop = (slot: Slot<I>): Effect.Effect<void, E, R | RS> => {
      let sinceYield = 0
      const attempt = makeAttempt(slot)
      const attemptThenStep = Effect.suspend(() => Effect.flatMap(attempt, afterUnit))
      const pullAsync = Effect.flatMap(
        Effect.onInterrupt(source.pull, () => Effect.sync(() => pulling--)),
        (next) => {
          pulling--
          if (Option.isNone(next)) {
            exhausted = true
            checkDone()
            return step
          }
          const unit = newUnit(next.value)
          if (draining) {
            ready.push(unit)
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
        if (outbox.length >= maxOutbox) return Effect.zipRight(outboxFull, step)
        if (stopReason !== undefined || active > limit || draining) return Effect.void
        const unit = ready.shift()
        if (unit !== undefined) {
          slot.unit = unit
          return Effect.flatMap(attempt, afterUnit)
        }
        if (!exhausted && waiting < maxWaiting()) {
          const pullSync = source.pullSync
          if (pullSync !== undefined) {
            // Iterables: no effect needed to get the next item.
            const next = pullSync()
            if (next.done === true) {
              exhausted = true
              checkDone()
              return step
            }
            slot.unit = newUnit(next.value)
            return attemptThenStep
          }
          pulling++
          return pullAsync
        }
        checkDone()
        return Effect.zipRight(idleWait, step)
      })
      return step
    }

    const spawnWorker = (): Effect.Effect<void, never, R | RS> =>
      Effect.suspend(() => {
        const slot: Slot<I> = {
          fiber: undefined,
          unit: undefined,
          inAttempt: false,
          attemptStart: 0,
          attemptDeadline: 0,
          timedOut: false,
          permit: undefined,
          calling: false,
          budget: undefined,
          pausedLeft: -1,
          turnedBack: false
        }
        active++
        slots.add(slot)
        const worker = Effect.interruptible(workerLoop(slot)).pipe(
          Effect.onExit((exit) =>
            Effect.suspend(() => {
              active--
              slots.delete(slot)
              const held = slot.unit
              if (held !== undefined && !held.finalized) {
                // Died between taking a unit and starting it: give it back.
                slot.unit = undefined
                ready.unshift(held)
              }
              if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
                const err = Cause.failureOption(exit.cause)
                if (Option.isSome(err)) Deferred.unsafeDone(stopped, Exit.fail(err.value))
                else Deferred.unsafeDone(stopped, Exit.failCause(Cause.die(Cause.squash(exit.cause))))
                return Effect.void
              }
              if (stopReason === undefined && active < limit && slot.timedOut) {
                return spawnWorker()
              }
              return Effect.void
            })
          )
        )
        return Effect.map(Effect.forkIn(worker, scope), (fiber) => {
          slot.fiber = fiber
        })
      })

    const setLimit = (n: number): Effect.Effect<void, never, R | RS> =>
      Effect.suspend(() => {
        limit = Math.max(1, Math.floor(n))
        if (active > limit) {
          wakeAll()
          return Effect.void
        }
        const missing = limit - active
        return Effect.repeatN(spawnWorker(), Math.max(0, missing - 1)).pipe(Effect.when(() => missing > 0))
      })

    // ---- the watchdog: interrupts attempts that ran past their timeout
    let watchdogIdle: (() => void) | undefined = undefined
    function wakeWatchdog() {
      const resume = watchdogIdle
      if (resume !== undefined) {
        watchdogIdle = undefined
        resume()
      }
    }
    const watchdog: Effect.Effect<void> = Effect.suspend(() => {
      const t = now()
      let earliest = Number.POSITIVE_INFINITY
      const expired: Array<Slot<I>> = []
      for (const slot of slots) {
        if (!slot.inAttempt || slot.timedOut) continue
        if (slot.attemptDeadline <= t) expired.push(slot)
        else if (slot.attemptDeadline < earliest) earliest = slot.attemptDeadline
      }
      for (const slot of expired) {
        slot.timedOut = true
        if (slot.fiber !== undefined) slot.fiber.unsafeInterruptAsFork(slot.fiber.id())
      }
      if (earliest === Number.POSITIVE_INFINITY) {
        return Effect.zipRight(
          park((wake) => {
            watchdogIdle = wake
          }),
          watchdog
        )
      }
      return Effect.zipRight(Effect.sleep(Duration.millis(earliest - t)), watchdog)
    })
    // A shorter timeout can make an attempt due before the watchdog's next wake-up.
    const setTimeoutMs = (ms: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        const change = ms - timeoutMs
        timeoutMs = ms
        for (const slot of slots) if (slot.inAttempt) slot.attemptDeadline += change
        return change < 0 ? restartWatchdog : Effect.void
      })
    let watchdogFiber: Fiber.RuntimeFiber<void> | undefined = undefined
    const restartWatchdog: Effect.Effect<void> = Effect.suspend(() => {
      const old = watchdogFiber
      return Effect.zipRight(
        old === undefined ? Effect.void : Fiber.interrupt(old),
        Effect.map(Effect.forkIn(watchdog, scope), (f) => {
          watchdogFiber = f
        })
      )
    })

    // ---- draining: nothing new starts; the run stops once no attempt is calling, or after the grace period
    const beginDrain = (grace: Duration.Duration): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (stopReason !== undefined) return Effect.void
        draining = true
        wakeAll()
        if (inFlight === 0) {
          stop("drained")
          return Effect.void
        }
        return Effect.zipRight(
          Budget.stop(tenant),
          Effect.zipRight(Effect.sleep(grace), Effect.sync(() => stop("drained")))
        )
      })

    // ---- start
    yield* emitEvent(() => ({ _tag: "RunStarted", runId, at: now(), counts: counts() }))
    yield* Effect.logDebug("run started").pipe(Effect.annotateLogs({ maxConcurrent: limit, timeoutMs }))
    yield* restartWatchdog
    if (collect === undefined) yield* Effect.forkIn(flusher, scope)
    // A deadline already past (a job resumed after it): nothing starts, every item ends deadline_exceeded.
    if (deadlineAt <= startedAt) stop("deadline")
    else if (deadlineAt !== Number.POSITIVE_INFINITY) {
      yield* Effect.forkIn(
        Effect.zipRight(
          Effect.sleep(Duration.millis(Math.max(0, deadlineAt - startedAt))),
          Effect.sync(() => stop("deadline"))
        ),
        scope
      )
    }
    if (options.cancelled !== undefined) {
      yield* Effect.forkIn(
        Effect.zipRight(Deferred.await(options.cancelled), Effect.sync(() => stop("cancelled"))),
        scope
      )
    }
    if (options.draining !== undefined) {
      // Drained before it began: stop before any worker takes an item.
      if (yield* Deferred.isDone(options.draining)) yield* Effect.flatMap(Deferred.await(options.draining), beginDrain)
      else yield* Effect.forkIn(Effect.flatMap(Deferred.await(options.draining), beginDrain), scope)
    }
    if (isAdjustable(policy.maxConcurrent)) {
      yield* Effect.forkIn(Stream.runForEach(Stream.drop(policy.maxConcurrent.changes, 1), setLimit), scope)
    }
    if (isAdjustable(timeoutSetting)) {
      yield* Effect.forkIn(
        Stream.runForEach(Stream.drop(timeoutSetting.changes, 1), (d) => setTimeoutMs(Duration.toMillis(d))),
        scope
      )
    }
    if (onEvent !== undefined && breaker !== undefined) {
      const changes = yield* Scope.extend(breaker.subscribe, scope)
      yield* Effect.forkIn(
        Stream.runForEach(changes, (transition) =>
          onEvent({ _tag: "BreakerChanged", runId, transition, at: now(), counts: counts() })
        ),
        scope
      )
    }
    yield* setLimit(limit)

    const reason = yield* Deferred.await(stopped)

    // ---- stop everything still running; in-flight attempts record their own stop results
    yield* Scope.close(scope, Exit.void)
    metrics.inFlight.unsafeUpdate(0, noTags)

    let unfinished: Array<number> | undefined = undefined
    if (reason === "drained") {
      unfinished = [...left, ...ready, ...waitingUnits].map((unit) => unit.index)
      waiting = 0
      // An iterable is read to its end to name the items never taken (nothing is called for them).
      const pullSync = source.pullSync
      if (pullSync !== undefined) {
        for (let next = pullSync(); next.done !== true; next = pullSync()) unfinished.push(nextIndex++)
      }
      unfinished.sort((a, b) => a - b)
    } else if (reason !== "completed") {
      const at = now()
      const orphans: Array<Unit<I>> = [...left, ...ready, ...waitingUnits]
      ready.length = 0
      waitingUnits.clear()
      waiting = 0
      for (const unit of orphans) finalize(unit, stoppedResult(unit, reason, at))
      // Items never started end the same way, so every input has exactly one result.
      let more = true
      while (more) {
        const next = yield* source.pull
        if (Option.isNone(next)) more = false
        else {
          const unit = newUnit(next.value)
          finalize(unit, stoppedResult(unit, reason, at))
        }
      }
    }
    // Whatever the flusher had not handed over yet (including a batch it was holding when stopped).
    const rest = [...inHand, ...outbox.splice(0, outbox.length)]
    const restProgress = [...inHandProgress, ...outboxProgress.splice(0, outboxProgress.length)]
    inHand = []
    inHandProgress = []
    if (rest.length > 0) yield* handOver(rest, restProgress)

    metrics.itemStatus("succeeded").unsafeUpdate(succeeded, noTags)
    metrics.itemStatus("failed").unsafeUpdate(failed, noTags)
    metrics.itemStatus("cancelled").unsafeUpdate(cancelled, noTags)
    metrics.itemStatus("skipped").unsafeUpdate(skipped, noTags)
    const summary: RunSummary = {
      runId,
      ...counts(),
      inFlight: 0,
      waiting: 0,
      durationMs: now() - startedAt,
      stoppedBy: reason,
      ...(unfinished === undefined ? {} : { unfinished })
    }
    yield* Effect.logDebug("run finished").pipe(
      Effect.annotateLogs({ stoppedBy: reason, succeeded, failed, cancelled, skipped, durationMs: summary.durationMs })
    )
    yield* emitEvent(() => ({ _tag: "RunCompleted", runId, summary, at: now(), counts: counts() }))
    return summary
  })
