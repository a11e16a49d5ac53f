import { describe, expect, it } from "@effect/vitest"
import { Duration, Option } from "effect"
import * as fc from "effect/FastCheck"
import { fromStatus, parseResetDuration, retryAfter } from "../src/upstream/classify.js"

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
