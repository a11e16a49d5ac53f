/**
 * The state of one run of the pool, as one explicit object: what is fixed for the run, the settings
 * that may change while it runs, the counters, the units waiting or left over, the outbox and the
 * background fibers' wake-ups. Every other module of the pool reads and changes this object, only
 * inside synchronous sections, so no fiber ever sees it half-updated.
 *
 * Also the small state transitions several modules share: stopping the run, counting a call in and
 * out of flight, and parking/waking fibers without allocating per wake-up.
 */
import { Deferred, Duration, Effect, Exit, type Fiber, type Scope } from "effect"
import { isAdjustable } from "../Adjustable.js"
import * as Budget from "../Budget.js"
import * as EngineMetrics from "../EngineMetrics.js"
import type { ItemResult } from "../ItemResult.js"
import type { Policy } from "../Policy.js"
import type { Counts, ProgressEvent, StopReason } from "../Progress.js"
import * as RetryPolicy from "../RetryPolicy.js"
import type { ExecuteOptions } from "./types.js"
import type { Slot, Unit } from "./units.js"

export type { Slot, Unit } from "./units.js"
export { newSlot, newUnit } from "./units.js"

/** Counts right after an item finished, for its `ItemFinished` event (kept only with observers). */
export interface Progress {
  readonly counts: Counts
  readonly etaMs: number | undefined
}

export interface RunState<I, A, E> {
  // ---- fixed for the run
  readonly runId: string
  readonly policy: Policy
  readonly options: ExecuteOptions<I, A>
  /** Owns every fiber of the run; closed when the run stops. */
  readonly scope: Scope.CloseableScope
  readonly now: () => number
  readonly metrics: EngineMetrics.RunMetrics
  readonly onEvent: ((event: ProgressEvent<A>) => Effect.Effect<void>) | undefined
  /** Without observers a result needs no effect to hand over: it is stored synchronously. */
  readonly collect: ((result: ItemResult<A>) => void) | undefined
  /** Without observers, a hand-over tried synchronously before the outbox (see outbox.ts). */
  readonly offerNow: ((result: ItemResult<A>) => boolean) | undefined
  /** Number of input items, when known up front. */
  readonly total: number | undefined
  readonly tenant: Budget.Tenant
  /** Nothing stands between the worker and the call: the attempt's clock starts at once. */
  readonly direct: boolean
  readonly startedAt: number
  /** The earlier of the deadline from this run's start and a fixed moment (a resumed job keeps the one it began with). */
  readonly deadlineAt: number
  readonly maxRetryAfterMs: number | undefined
  /** Finished results beyond which workers wait for the flusher. */
  readonly maxOutbox: number
  /** Completed with the reason the run stops (or the source's failure). */
  readonly stopped: Deferred.Deferred<StopReason, E>
  /** Set when the run itself is interrupted from outside, so nobody will read the results. */
  readonly teardown: { readonly started: boolean }

  // ---- settings that may change mid-run
  limit: number
  timeoutMs: number

  // ---- counters
  active: number
  inFlight: number
  waiting: number
  outstanding: number
  pulling: number
  exhausted: boolean
  nextIndex: number
  stopReason: StopReason | undefined
  /** Set by a drain: no unit is taken and no call starts; the run stops once none is calling. */
  draining: boolean
  completed: number
  succeeded: number
  failed: number
  cancelled: number
  skipped: number

  // ---- units and workers
  readonly ready: Array<Unit<I>>
  readonly waitingUnits: Set<Unit<I>>
  /** Units a drain left without a result (interrupted or turned back mid-attempt). */
  readonly left: Array<Unit<I>>
  readonly slots: Set<Slot<I>>
  /** Wake-ups of idle workers. */
  readonly idle: Array<() => void>

  // ---- results not handed over yet (see outbox.ts)
  readonly outbox: Array<ItemResult<A>>
  /** Parallel to `outbox` when there is an `onEvent` observer. */
  readonly outboxProgress: Array<Progress>
  /** Results finalized and not yet handed over. */
  unemitted: number
  /** The batch the flusher is handing over right now. */
  inHand: ReadonlyArray<ItemResult<A>>
  inHandProgress: ReadonlyArray<Progress>
  readonly blockedOnOutbox: Array<() => void>
  flusherIdle: (() => void) | undefined

  // ---- the watchdog (see watchdog.ts)
  watchdogIdle: (() => void) | undefined
  watchdogFiber: Fiber.RuntimeFiber<void> | undefined
}

/** Reads the current settings and builds the state of a run about to start. */
export const make = <I, A, E>(
  policy: Policy,
  options: ExecuteOptions<I, A>,
  scope: Scope.CloseableScope,
  now: () => number,
  teardown: { readonly started: boolean },
  total: number | undefined
): Effect.Effect<RunState<I, A, E>> =>
  Effect.gen(function* () {
    const { runId, onEvent } = options
    const limitSetting = isAdjustable(policy.maxConcurrent) ? yield* policy.maxConcurrent.get : policy.maxConcurrent
    const limit = Math.max(1, Math.floor(limitSetting))
    const timeoutSetting = policy.attemptTimeout
    const timeoutMs = isAdjustable(timeoutSetting)
      ? Duration.toMillis(yield* timeoutSetting.get)
      : Duration.toMillis(timeoutSetting)
    const startedAt = now()
    return {
      runId,
      policy,
      options,
      scope,
      now,
      metrics: EngineMetrics.forRun(policy.name),
      onEvent,
      collect: onEvent === undefined ? options.collect : undefined,
      offerNow: onEvent === undefined ? options.offerNow : undefined,
      total,
      tenant: policy.tenant ?? Budget.tenant(runId, policy.priority ?? "normal"),
      direct: policy.rateLimiter === undefined && policy.breaker === undefined && policy.budget === undefined,
      startedAt,
      deadlineAt: Math.min(
        policy.deadline === undefined ? Number.POSITIVE_INFINITY : startedAt + Duration.toMillis(policy.deadline),
        policy.deadlineAt ?? Number.POSITIVE_INFINITY
      ),
      maxRetryAfterMs: RetryPolicy.maxRetryAfterMs(policy.retry),
      maxOutbox: Math.max(64, 4 * limit),
      stopped: yield* Deferred.make<StopReason, E>(),
      teardown,
      limit,
      timeoutMs,
      active: 0,
      inFlight: 0,
      waiting: 0,
      outstanding: 0,
      pulling: 0,
      exhausted: false,
      nextIndex: 0,
      stopReason: undefined,
      draining: false,
      completed: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      skipped: 0,
      ready: [],
      waitingUnits: new Set(),
      left: [],
      slots: new Set(),
      idle: [],
      outbox: [],
      outboxProgress: [],
      unemitted: 0,
      inHand: [],
      inHandProgress: [],
      blockedOnOutbox: [],
      flusherIdle: undefined,
      watchdogIdle: undefined,
      watchdogFiber: undefined
    }
  })

export const maxWaiting = <I, A, E>(run: RunState<I, A, E>): number => run.policy.maxWaiting ?? 4 * run.limit

export const counts = <I, A, E>(run: RunState<I, A, E>): Counts => {
  const { completed, succeeded, failed, cancelled, skipped, inFlight, waiting } = run
  const c = { completed, succeeded, failed, cancelled, skipped, inFlight, waiting }
  return run.total === undefined ? c : { total: run.total, ...c }
}

export const etaMs = <I, A, E>(run: RunState<I, A, E>): number | undefined => {
  if (run.total === undefined || run.completed === 0) return undefined
  return Math.round(((run.now() - run.startedAt) / run.completed) * (run.total - run.completed))
}

export const emitEvent = <I, A, E>(
  run: RunState<I, A, E>,
  event: () => ProgressEvent<A>
): Effect.Effect<void> => {
  const onEvent = run.onEvent
  return onEvent === undefined ? Effect.void : Effect.suspend(() => onEvent(event()))
}

/** Ends the run for `reason` (the first reason wins). */
export const stop = <I, A, E>(run: RunState<I, A, E>, reason: StopReason): void => {
  if (run.stopReason !== undefined) return
  run.stopReason = reason
  Deferred.unsafeDone(run.stopped, Exit.succeed(reason))
}

/** Completes the run once every item is taken, finished and handed over. */
export const checkDone = <I, A, E>(run: RunState<I, A, E>): void => {
  if (run.exhausted && run.pulling === 0 && run.outstanding === 0 && run.unemitted === 0) stop(run, "completed")
}

/**
 * The processor's in-flight gauge is moved by one, not set to this run's count: runs of the same
 * processor (the jobs of one processor, the parts of a job) share it, and each set it to its own.
 */
export const startCalling = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>): void => {
  slot.calling = true
  run.inFlight++
  run.metrics.inFlight.unsafeModify(1, EngineMetrics.noExtraTags)
}

/** The attempt stopped calling (ended, or waits for admission); a drain ends once none calls. */
export const stopCalling = <I, A, E>(run: RunState<I, A, E>, slot: Slot<I>): void => {
  if (!slot.calling) return
  slot.calling = false
  run.inFlight--
  run.metrics.inFlight.unsafeModify(-1, EngineMetrics.noExtraTags)
  if (run.draining && run.inFlight === 0) stop(run, "drained")
}

export const wakeOne = <I, A, E>(run: RunState<I, A, E>): void => {
  const resume = run.idle.shift()
  if (resume !== undefined) resume()
}

export const wakeAll = <I, A, E>(run: RunState<I, A, E>): void => {
  const all = run.idle.splice(0, run.idle.length)
  for (const resume of all) resume()
}

export const wakeWatchdog = <I, A, E>(run: RunState<I, A, E>): void => {
  const resume = run.watchdogIdle
  if (resume !== undefined) {
    run.watchdogIdle = undefined
    resume()
  }
}

export const wakeFlusher = <I, A, E>(run: RunState<I, A, E>): void => {
  const resume = run.flusherIdle
  if (resume !== undefined) {
    run.flusherIdle = undefined
    resume()
  }
}

/** Suspends until woken through `waiters` (each waiter is called at most once). */
export const parkIn = (waiters: Array<() => void>): Effect.Effect<void> =>
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
export const park = (register: (wake: (() => void) | undefined) => void): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    register(() => resume(Effect.void))
    return Effect.sync(() => register(undefined))
  })

