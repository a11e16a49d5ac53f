/**
 * Turns what an upstream answered into the engine's error taxonomy: every client maps its failures
 * through here so that retries and breakers behave the same whatever the upstream.
 */
import type { HttpClientError } from "@effect/platform"
import { Duration, Option } from "effect"
import { AttemptTimeout, Permanent, RateLimited, Transient, type TaskError } from "../engine/Errors.js"

/** Header lookup, case-insensitive as HTTP headers are (platform headers are lower-cased). */
export type HeaderLookup = (name: string) => string | undefined

/** `6m0s`, `1.5s`, `250ms`, `20` (seconds) → milliseconds. Used by OpenAI-style reset headers. */
export const parseResetDuration = (raw: string): number | undefined => {
  const value = raw.trim()
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== value) return undefined
  let ms = 0
  for (const [, n, unit] of parts) {
    const x = Number(n)
    ms += unit === "h" ? x * 3_600_000 : unit === "m" ? x * 60_000 : unit === "s" ? x * 1000 : x
  }
  return ms
}

/**
 * How long the upstream asked us to wait: `Retry-After` as delta-seconds or as an HTTP date, else
 * the earliest `x-ratelimit-reset-*` header (a duration, delta seconds, or an epoch timestamp in
 * seconds or milliseconds — see `resetMillis`). `None` when it said nothing usable.
 */
export const retryAfter = (header: HeaderLookup, now: number): Option.Option<Duration.Duration> => {
  const ra = header("retry-after")?.trim()
  if (ra !== undefined && ra !== "") {
    if (/^\d+$/.test(ra)) return Option.some(Duration.seconds(Number(ra)))
    const at = Date.parse(ra)
    if (!Number.isNaN(at)) return Option.some(Duration.millis(Math.max(0, at - now)))
  }
  const resets = ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset"]
    .map((name) => header(name))
    .flatMap((raw) => {
      if (raw === undefined) return []
      const ms = resetMillis(raw, now)
      return ms === undefined ? [] : [ms]
    })
  return resets.length === 0 ? Option.none() : Option.some(Duration.millis(Math.min(...resets)))
}

/** A bare number at least this large is a moment, not a wait: 1e9 s is 2001-09-09 as an epoch, but 31 years as a delta. */
const EPOCH_SECONDS_FROM = 1e9
/** …and at least this large, a moment in epoch milliseconds (1e12 ms is 2001-09-09; as seconds it would be year 33658). */
const EPOCH_MILLIS_FROM = 1e12

/**
 * One reset header → the wait in ms. A bare number is ambiguous between APIs: OpenAI sends a delta
 * in seconds (`20`), GitHub and many others the moment of the reset in epoch seconds (`1767225600`),
 * a few in epoch milliseconds. No real delta is decades long, so the size tells them apart; a
 * moment already past means no wait.
 */
export const resetMillis = (raw: string, now: number): number | undefined => {
  const value = raw.trim()
  if (/^\d+(\.\d+)?$/.test(value)) {
    const n = Number(value)
    if (n >= EPOCH_MILLIS_FROM) return Math.max(0, n - now)
    if (n >= EPOCH_SECONDS_FROM) return Math.max(0, n * 1000 - now)
  }
  return parseResetDuration(value)
}

/** The class of a non-2xx answer. `what` names the call for messages (never includes secrets). */
export const fromStatus = (status: number, header: HeaderLookup, what: string, now: number): TaskError => {
  if (status === 429) {
    const after = retryAfter(header, now)
    return Option.isSome(after)
      ? new RateLimited({ message: `${what}: 429 Too Many Requests`, retryAfter: after.value })
      : new RateLimited({ message: `${what}: 429 Too Many Requests` })
  }
  if (status === 408) return new AttemptTimeout({ message: `${what}: 408 Request Timeout` })
  if (status === 503) {
    const after = retryAfter(header, now)
    const message = `${what}: upstream answered 503`
    return Option.isSome(after) ? new Transient({ message, status, retryAfter: after.value }) : new Transient({ message, status })
  }
  if (status >= 500) return new Transient({ message: `${what}: upstream answered ${status}`, status })
  return new Permanent({ message: `${what}: upstream answered ${status}`, status })
}

/** A request that never got an answer: refused, reset, DNS, TLS… all worth trying again. */
export const fromRequestError = (error: Pick<HttpClientError.RequestError, "reason">, what: string): TaskError =>
  error.reason === "InvalidUrl" || error.reason === "Encode"
    ? new Permanent({ message: `${what}: invalid request (${error.reason})` })
    : new Transient({ message: `${what}: connection failed` })
