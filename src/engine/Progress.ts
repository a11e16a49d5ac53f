/**
 * Progress of a run as a sequence of events: every item start, retry and finish, every breaker
 * change, with running counts and an ETA, so a caller can show live progress.
 */
import type { ItemError, ItemResult } from "./ItemResult.js"
import type { Transition } from "./CircuitBreaker.js"

export interface Counts {
  /** Number of input items, when known up front. */
  readonly total?: number
  readonly completed: number
  readonly succeeded: number
  readonly failed: number
  readonly cancelled: number
  readonly skipped: number
  /** Attempts running right now. */
  readonly inFlight: number
  /** Items waiting for a retry. */
  readonly waiting: number
}

/** `drained`: `RunControl.drain` stopped the run; some items may have no result (see `unfinished`). */
export type StopReason = "completed" | "deadline" | "cancelled" | "drained"

export interface RunSummary extends Counts {
  readonly runId: string
  readonly durationMs: number
  readonly stoppedBy: StopReason
  /**
   * With `stoppedBy: "drained"`: the indices (ascending) of the items that got no result — taken and
   * unfinished (interrupted, waiting for a retry or for admission) or never started. An iterable
   * input is read to its end to list them (nothing is called for them); a stream input is not read
   * further, so items it had not yet produced are not listed. Absent otherwise.
   */
  readonly unfinished?: ReadonlyArray<number>
}

export type ProgressEvent<A> =
  | { readonly _tag: "RunStarted"; readonly runId: string; readonly at: number; readonly counts: Counts }
  | {
      readonly _tag: "ItemStarted"
      readonly runId: string
      readonly index: number
      readonly id?: string
      readonly attempt: number
      readonly at: number
      readonly counts: Counts
    }
  | {
      readonly _tag: "ItemRetrying"
      readonly runId: string
      readonly index: number
      readonly id?: string
      /** The attempt that just failed. */
      readonly attempt: number
      readonly error: ItemError
      readonly delayMs: number
      readonly at: number
      readonly counts: Counts
    }
  | {
      readonly _tag: "ItemFinished"
      readonly runId: string
      readonly result: ItemResult<A>
      readonly at: number
      readonly counts: Counts
      /** Estimated time to finish the run, from the throughput so far (when the total is known). */
      readonly etaMs?: number
    }
  | {
      readonly _tag: "BreakerChanged"
      readonly runId: string
      readonly transition: Transition
      readonly at: number
      readonly counts: Counts
    }
  | { readonly _tag: "RunCompleted"; readonly runId: string; readonly summary: RunSummary; readonly at: number; readonly counts: Counts }
