/**
 * What a failed call says about an upstream's capacity, read from the error's tag, status and
 * `retryAfter` without importing the error classes' construction: push-back (429, 503, timeouts,
 * with the wait a 429/503 asked for) or nothing. Re-exported by `Budget` as `verdictOf`.
 */
import { Duration } from "effect"

export type Verdict = { readonly _tag: "success" } | { readonly _tag: "overload"; readonly throttled: boolean; readonly waitMs: number | undefined } | undefined

const tagOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : undefined

const retryAfterOf = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null && "retryAfter" in error && Duration.isDuration(error.retryAfter)
    ? Duration.toMillis(error.retryAfter)
    : undefined

const statusOf = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null && "status" in error && typeof error.status === "number" ? error.status : undefined

/**
 * What a failed call says about the upstream's capacity: 429, 503 and timeouts are push-back (and a
 * stated wait starts a cooldown); everything else says nothing about capacity.
 */
export const verdictOf = (error: unknown): Verdict => {
  switch (tagOf(error)) {
    case "RateLimited":
      return { _tag: "overload", throttled: true, waitMs: retryAfterOf(error) }
    case "Transient":
      return statusOf(error) === 503 ? { _tag: "overload", throttled: false, waitMs: retryAfterOf(error) } : undefined
    case "AttemptTimeout":
      return { _tag: "overload", throttled: false, waitMs: undefined }
    default:
      return undefined
  }
}
