/**
 * The error taxonomy the engine understands. Upstream clients classify every failure into one of
 * these tagged errors; the engine only ever reads the class to decide whether and when to retry and
 * whether the failure counts against a circuit breaker.
 */
import { Data, Duration } from "effect"
import type { ErrorType } from "../domain/ItemResult.js"

/** The attempt did not finish within its per-attempt timeout (or the upstream answered 408). */
export class AttemptTimeout extends Data.TaggedError("AttemptTimeout")<{
  readonly message: string
}> {}

/** The upstream said "slow down" (429). `retryAfter` comes from `Retry-After` or a reset header. */
export class RateLimited extends Data.TaggedError("RateLimited")<{
  readonly message: string
  readonly retryAfter?: Duration.Duration
}> {}

/** The upstream is unavailable right now: 5xx, connection refused/reset, DNS failure. */
export class Transient extends Data.TaggedError("Transient")<{
  readonly message: string
  readonly status?: number
  /** A 503 may say when to come back (`Retry-After`); a budget then pauses admission until then. */
  readonly retryAfter?: Duration.Duration
}> {}

/** The upstream refused the request for good: 4xx other than 408/429, bad credentials, not found. */
export class Permanent extends Data.TaggedError("Permanent")<{
  readonly message: string
  readonly status?: number
}> {}

/** The upstream answered, but the body did not match its schema. */
export class InvalidResponse extends Data.TaggedError("InvalidResponse")<{
  readonly message: string
}> {}

/** The circuit breaker guarding the upstream is open; nothing was sent. */
export class CircuitOpen extends Data.TaggedError("CircuitOpen")<{
  readonly key: string
  readonly retryAfter: Duration.Duration
  readonly message: string
}> {}

/** The task decided the item should not be processed (e.g. an account on a skip list). */
export class Skipped extends Data.TaggedError("Skipped")<{
  readonly reason: string
}> {}

/** Every error a task may fail with. Anything else must be mapped into one of these by the task. */
export type TaskError =
  | AttemptTimeout
  | RateLimited
  | Transient
  | Permanent
  | InvalidResponse
  | CircuitOpen
  | Skipped

/** The wire names of errors, as they appear in `ItemResult.error.type` (defined by the domain, the contract's vocabulary). */
export { errorTypes, type ErrorType } from "../domain/ItemResult.js"

export const errorTypeOf = (error: TaskError): ErrorType => {
  switch (error._tag) {
    case "AttemptTimeout":
      return "timeout"
    case "RateLimited":
      return "rate_limited"
    case "Transient":
      return "upstream_unavailable"
    case "Permanent":
      return "upstream_rejected"
    case "InvalidResponse":
      return "invalid_response"
    case "CircuitOpen":
      return "circuit_open"
    case "Skipped":
      return "skipped"
  }
}

/** Whether trying the same item again later could succeed; reported to callers on final errors. */
export const isRetryableType = (type: ErrorType): boolean => {
  switch (type) {
    case "timeout":
    case "rate_limited":
    case "upstream_unavailable":
    case "circuit_open":
    case "deadline_exceeded":
    case "cancelled":
      return true
    default:
      return false
  }
}

/**
 * How a breaker should count an outcome. Only failures that say "the upstream is unhealthy" count:
 * a 4xx or a 429 proves the upstream is alive and answering.
 */
export const countsAgainstBreaker = (error: TaskError): boolean =>
  error._tag === "Transient" || error._tag === "AttemptTimeout"

export const messageOf = (error: TaskError): string =>
  error._tag === "Skipped" ? error.reason : error.message
