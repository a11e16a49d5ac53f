/**
 * The wire form of one item's outcome (`ItemResult` in the engine): what a job's results, its `item`
 * events and the stored rows carry. Lives here so the contract needs no engine code; `jobs/Model.ts`
 * checks at compile time that it still matches the engine's types.
 */
import { Schema } from "effect"

/** The error taxonomy's names, as the engine's `errorTypeOf` reports them. */
export const errorTypes = [
  "timeout",
  "rate_limited",
  "upstream_unavailable",
  "upstream_rejected",
  "invalid_response",
  "circuit_open",
  "deadline_exceeded",
  "cancelled",
  "unexpected",
  "skipped"
] as const
export const ErrorType = Schema.Literal(...errorTypes)
export type ErrorType = typeof ErrorType.Type

export const ItemError = Schema.Struct({
  type: ErrorType,
  message: Schema.String,
  retryable: Schema.Boolean,
  /** For rate limits and open breakers: how long the upstream asked us to wait. */
  retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true })
})

const common = {
  /** Position of the item in the input (0-based). */
  index: Schema.Number,
  id: Schema.optionalWith(Schema.String, { exact: true }),
  /** Calls actually started for this item (0 when it never ran). */
  attempts: Schema.Number,
  durationMs: Schema.Number
}

/** An item's outcome whose success value is described by `value`. */
export const ItemResult = <A, I, R>(value: Schema.Schema<A, I, R>) =>
  Schema.Union(
    Schema.Struct({ ...common, status: Schema.Literal("succeeded"), value }),
    Schema.Struct({ ...common, status: Schema.Literal("failed", "cancelled", "skipped"), error: ItemError })
  )

/** An item's outcome whatever its kind (the value is checked by the kind's own schema where it matters). */
export const AnyItemResult = ItemResult(Schema.Unknown)
export type AnyItemResult = typeof AnyItemResult.Type
