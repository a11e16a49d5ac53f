/**
 * An item's `ItemResult` built from what the pool knows about it (its unit): success, failure, the
 * public `ItemError` of a task error, and the result of an item a deadline or a cancel stopped.
 */
import { Duration } from "effect"
import { errorTypeOf, isRetryableType, messageOf, type ErrorType, type TaskError } from "../Errors.js"
import type { ItemError, ItemResult, ItemStatus } from "../ItemResult.js"
import type { Unit } from "./state.js"

const durationOf = <I>(unit: Unit<I>, at: number) => (unit.firstStart < 0 ? 0 : at - unit.firstStart)

/**
 * Calls actually made for the item. A task that asks for `AttemptContext.guard` made exactly its
 * guarded calls that went out — not those a budget or breaker turned away, nor a call it shares
 * with other items outside the guard (a forum login); a task that does not is one call per run.
 */
const callsOf = <I>(unit: Unit<I>) => (unit.usesGuard ? unit.guardedCalls : unit.attempts)

export const success = <I, A>(unit: Unit<I>, value: A, at: number): ItemResult<A> =>
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

export const failure = <I, A>(
  unit: Unit<I>,
  status: Exclude<ItemStatus, "succeeded">,
  error: ItemError,
  at: number
): ItemResult<A> =>
  unit.id === undefined
    ? { index: unit.index, status, attempts: callsOf(unit), durationMs: durationOf(unit, at), error }
    : { index: unit.index, id: unit.id, status, attempts: callsOf(unit), durationMs: durationOf(unit, at), error }

export const itemError = (error: TaskError, note?: string, retryAfterMs?: number): ItemError => {
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

const stopStatus = (
  reason: "deadline" | "cancelled"
): { status: Exclude<ItemStatus, "succeeded">; type: ErrorType; message: string } =>
  reason === "deadline"
    ? { status: "failed", type: "deadline_exceeded", message: "the batch deadline passed before this item finished" }
    : { status: "cancelled", type: "cancelled", message: "the run was cancelled before this item finished" }

/** The result of an item the deadline or a cancel stopped before it finished. */
export const stoppedResult = <I, A>(unit: Unit<I>, reason: "deadline" | "cancelled", at: number): ItemResult<A> => {
  const s = stopStatus(reason)
  const last = unit.lastError === undefined ? "" : `; last error: ${messageOf(unit.lastError)}`
  return failure(unit, s.status, { type: s.type, message: s.message + last, retryable: true }, at)
}
