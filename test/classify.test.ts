import { describe, expect, it } from "@effect/vitest"
import { Duration, Option } from "effect"
import * as fc from "effect/FastCheck"
import { fromStatus, parseResetDuration, resetMillis, retryAfter } from "../src/upstream/classify.js"

const headers = (h: Record<string, string>) => (name: string) => h[name]
const now = Date.UTC(2026, 10, 28, 8, 0, 0)

describe("upstream failure classification", () => {
  it("5xx → transient, 408 → timeout, 429 → rate limited, other 4xx → permanent", () => {
    const none = headers({})
    expect([500, 502, 503, 504].map((s) => fromStatus(s, none, "x", now)._tag)).toEqual(Array(4).fill("Transient"))
    expect(fromStatus(408, none, "x", now)._tag).toBe("AttemptTimeout")
    expect(fromStatus(429, none, "x", now)._tag).toBe("RateLimited")
    expect([400, 401, 403, 404, 422].map((s) => fromStatus(s, none, "x", now)._tag)).toEqual(Array(5).fill("Permanent"))
  })

  it("Retry-After in seconds", () => {
    const e = fromStatus(429, headers({ "retry-after": "7" }), "x", now)
    expect(e._tag === "RateLimited" && e.retryAfter !== undefined && Duration.toMillis(e.retryAfter)).toBe(7_000)
  })

  it("Retry-After as an HTTP date", () => {
    const at = new Date(now + 12_000).toUTCString()
    const after = retryAfter(headers({ "retry-after": at }), now)
    expect(Option.map(after, Duration.toMillis)).toEqual(Option.some(12_000))
  })

  it("an HTTP date in the past means no wait", () => {
    const after = retryAfter(headers({ "retry-after": new Date(now - 5_000).toUTCString() }), now)
    expect(Option.map(after, Duration.toMillis)).toEqual(Option.some(0))
  })

  it("x-ratelimit-reset-* headers (OpenAI style durations), the earliest wins", () => {
    const after = retryAfter(headers({ "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1.5s" }), now)
    expect(Option.map(after, Duration.toMillis)).toEqual(Option.some(1_500))
  })

  it("x-ratelimit-reset as an epoch timestamp in seconds is the time until that moment", () => {
    // 1767225600 = 2026-01-01T00:00:00Z; take a `now` 90 s before it.
    const before = 1_767_225_600_000 - 90_000
    const after = retryAfter(headers({ "x-ratelimit-reset": "1767225600" }), before)
    expect(Option.map(after, Duration.toMillis)).toEqual(Option.some(90_000))
    const e = fromStatus(429, headers({ "x-ratelimit-reset": "1767225600" }), "x", before)
    expect(e._tag === "RateLimited" && e.retryAfter !== undefined && Duration.toMillis(e.retryAfter)).toBe(90_000)
  })

  it("x-ratelimit-reset as epoch milliseconds, as delta seconds, and a moment already past", () => {
    const at = now + 42_500
    expect(Option.map(retryAfter(headers({ "x-ratelimit-reset": String(at) }), now), Duration.toMillis)).toEqual(Option.some(42_500))
    expect(Option.map(retryAfter(headers({ "x-ratelimit-reset": "30" }), now), Duration.toMillis)).toEqual(Option.some(30_000))
    const past = String(Math.floor(now / 1000) - 10)
    expect(Option.map(retryAfter(headers({ "x-ratelimit-reset": past }), now), Duration.toMillis)).toEqual(Option.some(0))
  })

  it.prop(
    "a reset moment in epoch seconds or milliseconds is the wait until it; a delta below 1e9 s stays a delta",
    [fc.integer({ min: 1_000_000_000, max: 4_000_000_000 }), fc.integer({ min: 0, max: 999_999_999 })],
    ([epochSeconds, delta]) => {
      const at = epochSeconds * 1000
      const nowMs = at - 123_000
      expect(resetMillis(String(epochSeconds), nowMs)).toBe(123_000)
      expect(resetMillis(String(at), nowMs)).toBe(123_000)
      expect(resetMillis(String(delta), nowMs)).toBe(delta * 1000)
    }
  )

  it("garbage headers are ignored", () => {
    expect(Option.isNone(retryAfter(headers({ "retry-after": "soon", "x-ratelimit-reset": "later" }), now))).toBe(true)
    const e = fromStatus(429, headers({ "retry-after": "soon" }), "x", now)
    expect(e._tag === "RateLimited" && e.retryAfter).toBe(undefined)
  })

  it.prop("durations round-trip: NhNmNs and N(.N)s", [fc.nat(5), fc.nat(59), fc.nat(59), fc.nat(999)], ([h, m, s, ms]) => {
    expect(parseResetDuration(`${h}h${m}m${s}s`)).toBe(((h * 60 + m) * 60 + s) * 1000)
    expect(parseResetDuration(`${ms}ms`)).toBe(ms)
    expect(parseResetDuration(`${s}`)).toBe(s * 1000)
  })

  it("messages never carry header values or secrets", () => {
    const e = fromStatus(401, headers({ authorization: "Bearer sk-secret" }), "llm chat completion", now)
    expect(JSON.stringify(e)).not.toContain("sk-secret")
  })
})
