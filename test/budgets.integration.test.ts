/**
 * Upstream budgets through the service over real sockets (service and sandbox on 127.0.0.1, port
 * 0): the ceiling holds over many jobs, a 429 with Retry-After pauses every job, a small job is not
 * queued behind a big one, a wait for admission is not a timeout, and /api/upstreams reads and
 * changes the budgets.
 */
import type { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { JobAccepted, UpstreamView } from "../src/http/Api.js"
import { JobDetail } from "../src/jobs/Model.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { eventually, json, raw, rawJson, Service, serviceLayer, waitForJob } from "./support/http.js"

type Env = Readonly<Record<string, string>>

const withService = <A, E>(self: Effect.Effect<A, E, Service | Sandbox.Sandbox | HttpClient.HttpClient>, env: Env = {}) =>
  Effect.provide(self, serviceLayer({ env }))

const url = Effect.map(Service, (s) => s.url)
const stats = Effect.flatMap(Sandbox.Sandbox, (s) => s.stats)

const posts = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ postId: `${prefix}-p${i}`, articleId: `${prefix}-a${i}`, kolSerial: i % 2 === 0 ? "101" : "102" }))

const submitAsync = (body: unknown) =>
  Effect.gen(function* () {
    const base = yield* url
    const response = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", body, { prefer: "respond-async" })
    expect(response.status, response.body).toBe(202)
    return (yield* Schema.decodeUnknown(JobAccepted)(json(response))).id
  })

const upstreams = Effect.gen(function* () {
  const response = yield* raw(`${yield* url}/api/upstreams`)
  expect(response.status).toBe(200)
  return yield* Schema.decodeUnknown(Schema.Array(UpstreamView))(json(response))
})
const forum = Effect.map(upstreams, (all) => all.find((u) => u.key === "forum"))

const done = (job: JobDetail) => job.status === "completed"

describe("upstream budgets over HTTP", () => {
  it.live("ten jobs at maxConcurrent 3 at once: the forum never sees more than its ceiling (logins included)", () =>
    withService(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 80 } })
        yield* sandbox.setKnobs("login", { latency: { kind: "fixed", ms: 80 } })
        const ids = yield* Effect.forEach(Array.from({ length: 10 }, (_, j) => j), (j) =>
          submitAsync({ posts: posts(`j${j}`, 6), maxConcurrent: 3 })
        , { concurrency: "unbounded" })
        const base = yield* url
        yield* Effect.forEach(ids, (id) => waitForJob(base, id, done, "30 seconds"), { concurrency: "unbounded" })
        const s = yield* stats
        expect(s.routes.interactions.calls).toBe(60)
        // Only forum routes were called: every call in flight at once, logins and interactions together.
        expect(s.totalPeakInFlight).toBeLessThanOrEqual(5)
        expect(s.routes.interactions.peakInFlight).toBeGreaterThanOrEqual(4)
      })
    ))

  it.live("a 429 with Retry-After: 2 stops every job's calls to that upstream for ~2 s, then they all finish", () =>
    withService(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 50 } })
        // Log both accounts in first, so the logins are not part of what is measured.
        const base = yield* url
        const warm = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("warm", 2) })
        expect(warm.status).toBe(200)
        yield* sandbox.setKnobs("interactions", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 2 } })
        const ids = yield* Effect.forEach(["a", "b"], (j) => submitAsync({ posts: posts(j, 10), maxConcurrent: 3 }))
        // The first 429s: the upstream is healthy again at once, but asked for 2 s.
        yield* eventually(Effect.flatMap(forum, (f) => ((f?.throttled ?? 0) > 0 ? Effect.void : Effect.fail("no 429 yet"))), "5 seconds")
        yield* sandbox.setKnobs("interactions", { rateLimitRate: 0 })
        const paused = yield* forum
        expect(paused?.cooldownUntil).toBeDefined()
        yield* Effect.sleep("300 millis")
        const before = (yield* stats).routes.interactions.calls
        yield* Effect.sleep("1300 millis")
        // Nobody — neither job — started a call while the upstream's wait lasted.
        expect((yield* stats).routes.interactions.calls).toBe(before)
        const jobs = yield* Effect.forEach(ids, (id) => waitForJob(base, id, done, "20 seconds"))
        for (const job of jobs) expect(job.succeeded).toBe(10)
        expect((yield* forum)?.cooldowns).toBeGreaterThanOrEqual(1)
      })
    ))

  it.live("a small job submitted after a big one finishes long before it (round-robin at the budget)", () =>
    withService(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 100 } })
        const base = yield* url
        const big = yield* submitAsync({ posts: posts("big", 60), maxConcurrent: 2 })
        yield* Effect.sleep("300 millis")
        const small = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("small", 4), maxConcurrent: 2 })
        expect(small.status).toBe(200)
        const detail = yield* Schema.decodeUnknown(JobDetail)(json(small))
        expect(detail.succeeded).toBe(4)
        // Sharing 2 permits with the big job, one turn each: ~4 × 100 ms, not behind ~60 × 100 ms / 2.
        expect(detail.durationMs ?? Number.POSITIVE_INFINITY).toBeLessThan(1_500)
        const bigNow = yield* waitForJob(base, big, () => true)
        expect(bigNow.status).toBe("running")
        yield* waitForJob(base, big, done, "20 seconds")
      }),
      { FORUM_MAX_CONCURRENT: "2", FORUM_ADAPTIVE: "off" }
    ))

  it.live("a wait for admission longer than the attempt timeout is not a timeout", () =>
    withService(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 400 } })
        const base = yield* url
        const response = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", {
          posts: posts("t", 5),
          maxConcurrent: 5,
          timeoutSeconds: 1
        })
        const detail = yield* Schema.decodeUnknown(JobDetail)(json(response))
        // One at a time: the last item waited ~1.6 s for admission, with a 1 s attempt timeout.
        expect(detail.results.map((r) => [r.status, r.attempts])).toEqual(Array.from({ length: 5 }, () => ["succeeded", 1]))
        expect((yield* stats).routes.interactions.peakInFlight).toBe(1)
      }),
      { FORUM_MAX_CONCURRENT: "1" }
    ))

  it.live("GET /api/upstreams shows the four budgets; PATCH changes one at once; bad PATCHes are 400/404; metrics", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const all = yield* upstreams
        expect(all.map((u) => [u.key, u.ceiling, u.limit, u.adaptive, u.algorithm])).toEqual([
          ["forum", 5, 5, true, "gradient"],
          ["llm", 3, 3, true, "gradient"],
          ["market", 5, 5, true, "gradient"],
          ["news", 5, 5, true, "gradient"]
        ])
        const patched = yield* rawJson(`${base}/api/upstreams/llm`, "PATCH", { ceiling: 8, rate: "600/minute", adaptive: false })
        expect(patched.status, patched.body).toBe(200)
        expect(json(patched)).toMatchObject({ key: "llm", ceiling: 8, limit: 8, adaptive: false, algorithm: "fixed", rate: "600/minute" })
        expect((yield* upstreams).find((u) => u.key === "llm")).toMatchObject({ ceiling: 8, rate: "600/minute" })
        const unrated = yield* rawJson(`${base}/api/upstreams/llm`, "PATCH", { rate: null })
        expect(json(unrated)).not.toHaveProperty("rate")

        const zero = yield* rawJson(`${base}/api/upstreams/forum`, "PATCH", { ceiling: 0 })
        expect(zero.status).toBe(400)
        expect(zero.body).toContain("ceiling")
        const badRate = yield* rawJson(`${base}/api/upstreams/forum`, "PATCH", { rate: "often" })
        expect(badRate.status).toBe(400)
        expect(badRate.body).toContain("rate")
        const unknown = yield* rawJson(`${base}/api/upstreams/nope`, "PATCH", { ceiling: 2 })
        expect(unknown.status).toBe(404)
        expect(unknown.body).toContain("nope")
        expect((yield* forum)?.ceiling).toBe(5)

        const metrics = yield* raw(`${base}/metrics`)
        expect(metrics.body).toMatch(/pp_upstream_limit\{[^}]*upstream="llm"[^}]*\} 8/)
        expect(metrics.body).toContain("pp_upstream_in_flight")
      })
    ))

  it.live("priority: a high-priority batch goes first when the budget is the bottleneck; bad priority is a 400", () =>
    withService(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 100 } })
        const base = yield* url
        const triggers = (n: number) => Array.from({ length: n }, (_, i) => ({ triggerKey: i % 2 === 0 ? "limit_up" : "volume_surge" }))
        const low = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple?maxConcurrent=3&priority=low`, "POST", triggers(30), {
          prefer: "respond-async"
        })
        expect(low.status, low.body).toBe(202)
        const lowId = (yield* Schema.decodeUnknown(JobAccepted)(json(low))).id
        yield* Effect.sleep("250 millis")
        const high = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple?maxConcurrent=3&priority=high`, "POST", triggers(6))
        expect(high.status, high.body).toBe(200)
        const highDetail = yield* Schema.decodeUnknown(JobDetail)(json(high))
        expect(highDetail.succeeded).toBe(6)
        expect(highDetail.options.priority).toBe("high")
        expect((yield* waitForJob(base, lowId, () => true)).status).toBe("running")
        const bad = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("x", 1), priority: "urgent" })
        expect(bad.status).toBe(400)
        expect(bad.body).toContain("priority")
        yield* waitForJob(base, lowId, done, "20 seconds")
      }),
      { MARKET_MAX_CONCURRENT: "1", MARKET_ADAPTIVE: "off", NEWS_MAX_CONCURRENT: "1", NEWS_ADAPTIVE: "off" }
    ))
})


