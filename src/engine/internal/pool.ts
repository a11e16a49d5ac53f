/**
 * The engine's worker pool: runs every item of a source through a task under a policy. This module
 * wires one run together and is the pool's entry point; the parts live beside it:
 *
 * - state.ts    the run's state, one explicit object, and the transitions the parts share
 * - worker.ts   the worker fibers: take a unit, run its attempt, go on (work-conserving)
 * - attempt.ts  one attempt: admission, breaker, rate limiter, the task, and the bookkeeping after
 * - retry.ts    after a failed try: end the item or wait for a retry (in a sleeper fiber, not a worker)
 * - watchdog.ts per-attempt timeouts (one fiber per run) and the whole-run deadline
 * - outbox.ts   result delivery: finished results handed over in batches by one flusher fiber
 * - stop.ts     draining, and settling the items left when the run stops
 * - results.ts  the `ItemResult` of an item
 *
 * The background fibers of a run (workers, watchdog, flusher, retry sleepers, timers, watchers of
 * the control and the adjustable settings) all live in the run's scope, closed when it stops.
 */
import { Deferred, Duration, Effect, Exit, Scope, Stream } from "effect"
import { isAdjustable } from "../Adjustable.js"
import type { Policy } from "../Policy.js"
import type { RunSummary } from "../Progress.js"
import { flusher } from "./outbox.js"
import type { Source } from "./source.js"
import * as RunState from "./state.js"
import { beginDrain, settle } from "./stop.js"
import type { ExecuteOptions, Task } from "./types.js"
import { deadlineTimer, restartWatchdog, setTimeoutMs } from "./watchdog.js"
import { setLimit } from "./worker.js"

export type { AttemptContext, ExecuteOptions, Task, Upstream } from "./types.js"

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
      const now = () => clock.unsafeCurrentTimeMillis()
      return Effect.flatMap(RunState.make<I, A, E>(policy, options, scope, now, teardown, source.total), (run) =>
        runIn(run, source, task)
      ).pipe(
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
  run: RunState.RunState<I, A, E>,
  source: Source<I, E, RS>,
  task: Task<I, A, R>
): Effect.Effect<RunSummary, E, R | RS> =>
  Effect.gen(function* () {
    const { policy, options, scope, runId } = run
    const onEvent = run.onEvent
    const now = run.now
    yield* RunState.emitEvent(run, () => ({ _tag: "RunStarted", runId, at: now(), counts: RunState.counts(run) }))
    yield* Effect.logDebug("run started").pipe(Effect.annotateLogs({ maxConcurrent: run.limit, timeoutMs: run.timeoutMs }))
    yield* restartWatchdog(run)
    if (run.collect === undefined) yield* Effect.forkIn(flusher(run), scope)
    // A deadline already past (a job resumed after it): nothing starts, every item ends deadline_exceeded.
    if (run.deadlineAt <= run.startedAt) RunState.stop(run, "deadline")
    else if (run.deadlineAt !== Number.POSITIVE_INFINITY) yield* Effect.forkIn(deadlineTimer(run), scope)
    const cancelled = options.cancelled
    if (cancelled !== undefined) {
      yield* Effect.forkIn(Effect.zipRight(Deferred.await(cancelled), Effect.sync(() => RunState.stop(run, "cancelled"))), scope)
    }
    const draining = options.draining
    if (draining !== undefined) {
      const drain = Effect.flatMap(Deferred.await(draining), (grace) => beginDrain(run, grace))
      // Drained before it began: stop before any worker takes an item.
      if (yield* Deferred.isDone(draining)) yield* drain
      else yield* Effect.forkIn(drain, scope)
    }
    if (isAdjustable(policy.maxConcurrent)) {
      yield* Effect.forkIn(
        Stream.runForEach(Stream.drop(policy.maxConcurrent.changes, 1), (n) => setLimit(run, source, task, n)),
        scope
      )
    }
    const timeoutSetting = policy.attemptTimeout
    if (isAdjustable(timeoutSetting)) {
      yield* Effect.forkIn(
        Stream.runForEach(Stream.drop(timeoutSetting.changes, 1), (d) => setTimeoutMs(run, Duration.toMillis(d))),
        scope
      )
    }
    const breaker = policy.breaker
    if (onEvent !== undefined && breaker !== undefined) {
      const changes = yield* Scope.extend(breaker.subscribe, scope)
      yield* Effect.forkIn(
        Stream.runForEach(changes, (transition) =>
          onEvent({ _tag: "BreakerChanged", runId, transition, at: now(), counts: RunState.counts(run) })
        ),
        scope
      )
    }
    yield* setLimit(run, source, task, run.limit)

    const reason = yield* Deferred.await(run.stopped)
    // Stop everything still running; in-flight attempts record their own stop results.
    yield* Scope.close(scope, Exit.void)
    const summary = yield* settle(run, source, reason)
    yield* RunState.emitEvent(run, () => ({ _tag: "RunCompleted", runId, summary, at: now(), counts: RunState.counts(run) }))
    return summary
  })
