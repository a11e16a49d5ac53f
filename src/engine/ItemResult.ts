/**
 * The outcome of one input item: what the engine returns for every item of a run, whatever happened
 * to it. A run never fails as a whole because an item failed; each item carries its own status.
 */
import type { ErrorType } from "./Errors.js"

export type ItemStatus = "succeeded" | "failed" | "cancelled" | "skipped"

export interface ItemError {
  readonly type: ErrorType
  readonly message: string
  /** Whether submitting the item again later could succeed. */
  readonly retryable: boolean
  /** For rate limits and open breakers: how long the upstream asked us to wait. */
  readonly retryAfterMs?: number
}

interface Common {
  /** Position of the item in the input (0-based). */
  readonly index: number
  readonly id?: string
  /** Calls actually started for this item (0 when it never ran). */
  readonly attempts: number
  /** From the first attempt's start to the final outcome, including retry waits. */
  readonly durationMs: number
}

export interface Succeeded<A> extends Common {
  readonly status: "succeeded"
  readonly value: A
}

export interface Unsuccessful extends Common {
  readonly status: "failed" | "cancelled" | "skipped"
  readonly error: ItemError
}

export type ItemResult<A> = Succeeded<A> | Unsuccessful

export const isSucceeded = <A>(result: ItemResult<A>): result is Succeeded<A> => result.status === "succeeded"

export interface Summary {
  readonly total: number
  readonly succeeded: number
  readonly failed: number
  readonly cancelled: number
  readonly skipped: number
}

export const summarize = <A>(results: Iterable<ItemResult<A>>): Summary => {
  let total = 0
  let succeeded = 0
  let failed = 0
  let cancelled = 0
  let skipped = 0
  for (const r of results) {
    total++
    if (r.status === "succeeded") succeeded++
    else if (r.status === "failed") failed++
    else if (r.status === "cancelled") cancelled++
    else skipped++
  }
  return { total, succeeded, failed, cancelled, skipped }
}

/**
 * The wire schema of an `ItemResult` (`schema(value)`) and of its error: the domain's, which the HTTP
 * contract uses, so the engine and the contract cannot describe a result differently.
 */
export { ItemError as ItemErrorSchema, ItemResult as schema } from "../domain/ItemResult.js"
