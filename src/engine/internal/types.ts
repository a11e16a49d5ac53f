/**
 * What a task sees of the pool and what the pool is told by the engine's entry points: the task's
 * signature and its `AttemptContext`, and the options of one `execute`.
 */
import type { Deferred, Duration, Effect } from "effect"
import type * as Budget from "../Budget.js"
import type { CircuitBreaker } from "../CircuitBreaker.js"
import type { TaskError } from "../Errors.js"
import type { ItemResult } from "../ItemResult.js"
import type { ProgressEvent } from "../Progress.js"

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
  /**
   * A synchronous hand-over tried first when there is no `onEvent` and nothing is waiting in the
   * outbox (a stream's mailbox with room); `false` sends the result through the outbox.
   */
  readonly offerNow?: (result: ItemResult<A>) => boolean
  readonly onEvent: ((event: ProgressEvent<A>) => Effect.Effect<void>) | undefined
  readonly cancelled: Deferred.Deferred<void> | undefined
  /** Completed with the grace period when the run is to drain (see `RunControl.drain`). */
  readonly draining: Deferred.Deferred<Duration.Duration> | undefined
}
