/**
 * The job model as the store, the runner and the HTTP API use it: the schemas of `src/domain/`
 * (what a job is, its kinds, lifecycle and events) plus the counting that turns finished items into
 * events. Also where the domain's copies of engine vocabulary (priorities, error types, item results)
 * are checked against the engine at compile time, since the domain may not import the engine.
 */
import type * as Budget from "../engine/Budget.js"
import type * as Errors from "../engine/Errors.js"
import type * as ItemResult from "../engine/ItemResult.js"
import type { AnyItemResult, ErrorType } from "../domain/ItemResult.js"
import type { Counts, JobStatus, Priority } from "../domain/Job.js"
import type { JobEvent } from "../domain/JobEvent.js"

export { AnyItemResult } from "../domain/ItemResult.js"
export * from "../domain/Job.js"
export { JobEvent } from "../domain/JobEvent.js"
export { GeneratedPost, JobKind, TriggerResult, jobKinds, kindSchemas } from "../domain/Kinds.js"

/** True only when `A` and `B` are the same type (both ways assignable, no `any` slipping through). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
/** The domain's wire vocabulary stays the engine's: each line fails to compile if they drift apart. */
export const sameAsEngine: {
  readonly priority: Same<Priority, Budget.Priority>
  readonly errorType: Same<ErrorType, Errors.ErrorType>
  readonly itemResult: Same<AnyItemResult, ItemResult.ItemResult<unknown>>
} = { priority: true, errorType: true, itemResult: true }

export const isTerminal = (status: JobStatus): boolean => status === "completed" || status === "cancelled"

/** Counts that grow as items finish (the runner's, a replay's, a follower's). */
export type Tally = { -readonly [K in keyof Counts]: Counts[K] }

export const emptyTally = (total: number): Tally => ({ total, completed: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 })

/** Adds `n` finished items of `status`. */
export const tally = (counts: Tally, status: ItemResult.ItemStatus, n = 1): void => {
  counts.completed += n
  counts[status] += n
}

/**
 * The two events one finished item produces, `item` then `progress` with the counts after it
 * (which the caller has already tallied).
 */
export const itemEvents = (
  jobId: string,
  item: { readonly seq: number; readonly result: AnyItemResult },
  counts: Counts,
  live: { readonly inFlight: number; readonly etaMs?: number } = { inFlight: 0 }
): readonly [JobEvent, JobEvent] => [
  { type: "item", jobId, seq: item.seq, result: item.result },
  { type: "progress", jobId, ...counts, ...live }
]

export const successOf = (status: JobStatus, counts: Counts): boolean =>
  status === "completed" && counts.failed === 0 && counts.cancelled === 0
