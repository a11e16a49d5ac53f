/**
 * The clients and processors against the sandbox upstream over real sockets on 127.0.0.1: no mocked
 * HttpClient anywhere. Latencies are kept to tens of milliseconds so the file runs in seconds.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Logger, LogLevel, Schedule } from "effect"
import * as CircuitBreaker from "../src/engine/CircuitBreaker.js"
import { CircuitBreakerRegistry } from "../src/engine/CircuitBreakerRegistry.js"
import * as Engine from "../src/engine/Engine.js"
import type { ItemResult } from "../src/engine/ItemResult.js"
import * as RetryPolicy from "../src/engine/RetryPolicy.js"
import { IntradayTriggersProcessor } from "../src/processors/IntradayTriggers.js"
import { InteractionsProcessor, type TrackedPost } from "../src/processors/Interactions.js"
import { PostGenerationProcessor } from "../src/processors/PostGeneration.js"
import { Sandbox } from "../src/sandbox/Sandbox.js"
import { ForumClient } from "../src/upstream/Forum.js"
import { world } from "./support/upstreams.js"

const posts = (n: number, kols: ReadonlyArray<string> = ["101", "102"]): ReadonlyArray<TrackedPost> =>
  Array.from({ length: n }, (_, i) => ({ postId: `p${i}`, articleId: `a${i}`, kolSerial: kols[i % kols.length] ?? "101" }))

const noRetry = RetryPolicy.make({ maxRetries: 0 })
const quickRetry = RetryPolicy.make({
  maxRetries: 2,
  schedules: { transient: Schedule.spaced("10 millis"), timeout: Schedule.spaced("10 millis") }
})
const errorOf = (r: ItemResult<unknown> | undefined) => (r !== undefined && r.status !== "succeeded" ? r.error : undefined)

describe("interactions processor", () => {
  it.scopedLive("reaches its concurrency limit at the sandbox and never exceeds it; one login per account", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 40 } })
      yield* sandbox.setKnobs("login", { latency: { kind: "fixed", ms: 30 } })
      const processor = yield* InteractionsProcessor
      const { results, summary } = yield* processor.run(posts(24))
      expect(summary).toMatchObject({ total: 24, succeeded: 24 })
      expect(results[5]).toMatchObject({ id: "p5", status: "succeeded" })
      const stats = yield* sandbox.stats
      expect(stats.routes.interactions.peakInFlight).toBe(3)
      expect(stats.routes.interactions.calls).toBe(24)
      expect(stats.logins).toEqual({ "kol101@example.com": 1, "kol102@example.com": 1 })
    }).pipe(Effect.provide(world())))

  it.scopedLive("a 401 on a cached token triggers exactly one re-login per account", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const processor = yield* InteractionsProcessor
      yield* processor.run(posts(6))
      yield* sandbox.revokeTokens
      const { summary } = yield* processor.run(posts(6), { maxConcurrent: 6 })
      expect(summary.succeeded).toBe(6)
      expect((yield* sandbox.stats).logins).toEqual({ "kol101@example.com": 2, "kol102@example.com": 2 })
    }).pipe(Effect.provide(world())))

  it.scopedLive("skips accounts on INTERACTIONS_SKIP_KOLS without calling the forum", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const processor = yield* InteractionsProcessor
      const { results } = yield* processor.run(posts(4))
      expect(results.map((r) => r.status)).toEqual(["succeeded", "skipped", "succeeded", "skipped"])
      expect((yield* sandbox.stats).routes.interactions.calls).toBe(2)
    }).pipe(Effect.provide(world({ env: { INTERACTIONS_SKIP_KOLS: "102, 999" } }))))

  it.scopedLive("a missing or rejected credential fails only that account's items, permanently", () =>
    Effect.gen(function* () {
      const processor = yield* InteractionsProcessor
      const { results } = yield* processor.run(posts(6, ["101", "555", "103"]))
      expect(results.map((r) => r.status)).toEqual(["succeeded", "failed", "failed", "succeeded", "failed", "failed"])
      expect(errorOf(results[1])).toMatchObject({ type: "upstream_rejected", retryable: false })
      expect(errorOf(results[1])?.message).toContain("555")
      expect(errorOf(results[2])?.message).toContain("rejected the credentials of KOL 103")
      expect(JSON.stringify(results)).not.toContain("wrong")
    }).pipe(Effect.provide(world())))
})

describe("processor settings from the environment", () => {
  it.scopedLive("valid values apply; an invalid one falls back to its default alone", () =>
    Effect.gen(function* () {
      const interactions = yield* InteractionsProcessor
      const posts = yield* PostGenerationProcessor
      expect(yield* interactions.limits).toEqual({ maxConcurrent: 3, timeoutSeconds: 12 })
      expect(yield* posts.limits).toEqual({ maxConcurrent: 5, timeoutSeconds: 120 })
    }).pipe(
      Effect.provide(
        world({
          env: { INTERACTIONS_MAX_CONCURRENT: "abc", INTERACTIONS_TIMEOUT_SECONDS: "12", POST_GENERATION_MAX_CONCURRENT: "5" }
        })
      )
    ))
})

describe("failure classification over real sockets", () => {
  const fetchOne = (articleId: string, timeoutMs = 2_000) =>
    Effect.gen(function* () {
      const forum = yield* ForumClient
      const [result] = yield* Engine.run([articleId], (id) => forum.interactions("101", id), {
        attemptTimeout: Duration.millis(timeoutMs),
        retry: noRetry
      })
      return errorOf(result)
    })

  it.scopedLive("each status and fault maps to its class", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const cases: ReadonlyArray<readonly [Parameters<typeof sandbox.setKnobs>[1], string]> = [
        [{ errorRate: 1, errorStatus: 503 }, "upstream_unavailable"],
        [{ errorRate: 1, errorStatus: 500 }, "upstream_unavailable"],
        [{ errorRate: 1, errorStatus: 502 }, "upstream_unavailable"],
        [{ errorRate: 1, errorStatus: 504 }, "upstream_unavailable"],
        [{ errorRate: 1, errorStatus: 408 }, "timeout"],
        [{ errorRate: 1, errorStatus: 400 }, "upstream_rejected"],
        [{ malformedRate: 1 }, "invalid_response"],
        [{ dropRate: 1 }, "upstream_unavailable"]
      ]
      yield* fetchOne("warm-up") // log in first, so the login route is not the one failing
      for (const [knobs, type] of cases) {
        yield* sandbox.setKnobs("interactions", { errorRate: 0, malformedRate: 0, dropRate: 0, ...knobs })
        expect({ knobs, type: (yield* fetchOne("a1"))?.type }).toEqual({ knobs, type })
      }
      yield* sandbox.setKnobs("interactions", { errorRate: 0, malformedRate: 0, dropRate: 0 })
      expect((yield* fetchOne("missing-7"))?.type).toBe("upstream_rejected")
    }).pipe(Effect.provide(world())))

  it.scopedLive("429 carries the upstream's wait: Retry-After seconds, HTTP date, reset header", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* fetchOne("warm-up")
      const seconds = { kind: "seconds", seconds: 7 } as const
      const date = { kind: "http-date", seconds: 9 } as const
      const reset = { kind: "reset-header", seconds: 4 } as const
      const waits: Array<number | undefined> = []
      for (const retryAfter of [seconds, date, reset]) {
        yield* sandbox.setKnobs("interactions", { rateLimitRate: 1, retryAfter })
        const error = yield* fetchOne("a1")
        expect(error?.type).toBe("rate_limited")
        waits.push(error?.retryAfterMs)
      }
      expect(waits[0]).toBe(7_000)
      expect(waits[1]).toBeGreaterThan(7_000)
      expect(waits[1]).toBeLessThanOrEqual(10_000) // HTTP dates have 1 s resolution
      expect(waits[2]).toBe(4_000)
    }).pipe(Effect.provide(world())))

  it.scopedLive("a hanging upstream is cut by the attempt timeout and the socket is closed", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* fetchOne("warm-up")
      yield* sandbox.reset
      yield* sandbox.setKnobs("interactions", { hangRate: 1 })
      const started = Date.now()
      const error = yield* fetchOne("a1", 150)
      expect(error?.type).toBe("timeout")
      expect(Date.now() - started).toBeLessThan(1_000)
      // The server sees the client go away: the call was really aborted, not left running.
      const stats = yield* Effect.retry(
        Effect.filterOrFail(sandbox.stats, (s) => s.routes.interactions.aborted === 1),
        Schedule.spaced("20 millis").pipe(Schedule.upTo("2 seconds"))
      )
      expect(stats.routes.interactions.inFlight).toBe(0)
    }).pipe(Effect.provide(world())))
})

describe("circuit breaker against a dead upstream", () => {
  it.scopedLive("opens after 3 failures; the sandbox then sees no calls until the recovery time; a probe closes it", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const registry = yield* CircuitBreakerRegistry
      const processor = yield* IntradayTriggersProcessor
      yield* sandbox.setKnobs("screen", { errorRate: 1, errorStatus: 503 })
      const triggers = Array.from({ length: 8 }, () => ({ triggerKey: "limit_up" }))
      const first = yield* processor.run(triggers, { maxConcurrent: 1, retry: noRetry })
      expect(first.results.map((r) => errorOf(r)?.type)).toEqual([
        ...Array(3).fill("upstream_unavailable"),
        ...Array(5).fill("circuit_open")
      ])
      expect((yield* sandbox.stats).routes.screen.calls).toBe(3)
      expect((yield* registry.get("market").pipe(Effect.flatMap((b) => b.snapshot))).status).toBe("open")
      // Still open: nothing reaches the upstream.
      yield* processor.run(triggers, { maxConcurrent: 2, retry: noRetry })
      expect((yield* sandbox.stats).routes.screen.calls).toBe(3)
      // The upstream recovers; after the recovery time one probe goes through and closes the breaker.
      yield* sandbox.setKnobs("screen", { errorRate: 0 })
      yield* Effect.sleep("350 millis")
      const again = yield* processor.run(triggers, { maxConcurrent: 1, retry: noRetry })
      expect(again.summary.succeeded).toBe(8)
      expect((yield* registry.get("market").pipe(Effect.flatMap((b) => b.snapshot))).status).toBe("closed")
    }).pipe(Effect.provide(world({ breakers: { recoveryTimeout: "300 millis" } }))))
})

describe("post generation and intraday triggers", () => {
  it.scopedLive("generates posts that name the stock, with model and token usage", () =>
    Effect.gen(function* () {
      const processor = yield* PostGenerationProcessor
      const { results, summary } = yield* processor.run([
        { kolSerial: "101", stockCode: "2330", stockName: "台積電", trigger: "limit_up" },
        { id: "req-2", kolSerial: "102", stockCode: "2317", prompt: "聊聊鴻海的營收" }
      ])
      expect(summary.succeeded).toBe(2)
      const [first, second] = results
      expect(first?.status === "succeeded" && first.value.content).toContain("2330")
      expect(first?.status === "succeeded" && first.value.usage?.totalTokens).toBeGreaterThan(0)
      expect(second?.id).toBe("req-2")
    }).pipe(Effect.provide(world())))

  it.scopedLive("runs the screen, then news for the keywords and top stocks", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const processor = yield* IntradayTriggersProcessor
      const { results } = yield* processor.run([
        { triggerKey: "limit_up", limit: 5 },
        { triggerKey: "volume_surge", newsKeywords: ["AI", "伺服器"] }
      ])
      const [first] = results
      expect(first?.status).toBe("succeeded")
      if (first?.status === "succeeded") {
        expect(first.value.stocks.length).toBe(5)
        expect(first.value.news.length).toBeGreaterThan(0)
      }
      const stats = yield* sandbox.stats
      expect(Object.keys(stats.routes.news.byId).some((q) => q.startsWith("漲停"))).toBe(true)
      expect(Object.keys(stats.routes.news.byId).some((q) => q.startsWith("AI 伺服器"))).toBe(true)
    }).pipe(Effect.provide(world())))

  it.scopedLive("retries transient failures with the configured schedule and succeeds", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("chat", { errorRate: 0.5 })
      const processor = yield* PostGenerationProcessor
      const requests = Array.from({ length: 6 }, (_, i) => ({ kolSerial: "101", stockCode: String(2330 + i) }))
      const { results } = yield* processor.run(requests, { retry: quickRetry, maxConcurrent: 3 })
      const attempts = results.reduce((n, r) => n + r.attempts, 0)
      expect(attempts).toBe((yield* sandbox.stats).routes.chat.calls)
    }).pipe(Effect.provide(world({ breakers: { rule: CircuitBreaker.consecutiveFailures(100) } }))))
})

describe("retry semantics over real sockets", () => {
  const fourTries = RetryPolicy.make({
    maxRetries: 3,
    schedules: { transient: Schedule.spaced("10 millis"), timeout: Schedule.spaced("10 millis") }
  })

  it.scopedLive("intraday: attempts count the calls made — news resets every time, its breaker opens: 7 calls, attempts 7", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("news", { dropRate: 1 })
      const processor = yield* IntradayTriggersProcessor
      const [result] = (yield* processor.run([{ triggerKey: "limit_up" }], { retry: fourTries })).results
      const stats = yield* sandbox.stats
      // 4 tries: the screen each time, news 3 times (reset), the 4th news call turned away by its open breaker.
      expect([stats.routes.screen.calls, stats.routes.news.calls]).toEqual([4, 3])
      expect(result).toMatchObject({ status: "failed", attempts: 7, error: { type: "circuit_open" } })
    }).pipe(Effect.provide(world())))

  it.scopedLive("intraday: with resets on both upstreams, the attempts of all items add up to the calls the sandbox saw", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("screen", { dropRate: 0.4 })
      yield* sandbox.setKnobs("news", { dropRate: 0.4 })
      const processor = yield* IntradayTriggersProcessor
      const triggers = Array.from({ length: 10 }, (_, i) => ({ triggerKey: `t${i}` }))
      const { results } = yield* processor.run(triggers, { retry: fourTries, maxConcurrent: 4 })
      const stats = yield* sandbox.stats
      expect(stats.routes.screen.calls + stats.routes.news.calls).toBeGreaterThan(20)
      expect(results.reduce((n, r) => n + r.attempts, 0)).toBe(stats.routes.screen.calls + stats.routes.news.calls)
    }).pipe(Effect.provide(world({ breakers: { rule: CircuitBreaker.consecutiveFailures(1_000) } }))))

  it.scopedLive("a forum login that times out is a timeout: the items retry it and succeed once the forum answers", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("login", { hangRate: 1 })
      const processor = yield* InteractionsProcessor
      const run = yield* Effect.fork(processor.run(posts(4, ["101"]), { retry: fourTries, maxConcurrent: 4 }))
      // The first login hangs past FORUM_LOGIN_TIMEOUT; then the forum recovers.
      yield* Effect.retry(
        Effect.filterOrFail(sandbox.stats, (s) => s.routes.login.calls >= 1),
        Schedule.spaced("5 millis").pipe(Schedule.upTo("2 seconds"))
      )
      yield* sandbox.setKnobs("login", { hangRate: 0 })
      const { results } = yield* Fiber.join(run)
      expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"])
      // A login is shared by the account's items and is not one of their calls: each made one.
      expect(results.map((r) => r.attempts)).toEqual([1, 1, 1, 1])
      expect((yield* sandbox.stats).routes.login.calls).toBe(2)
    }).pipe(Effect.provide(world({ env: { FORUM_LOGIN_TIMEOUT: "150 millis" } }))))

  it.scopedLive("a forum login that always times out fails the items as timeout (retryable), after their retries", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("login", { hangRate: 1 })
      const processor = yield* InteractionsProcessor
      const { results } = yield* processor.run(posts(2, ["101"]), { retry: fourTries })
      expect(results.map(errorOf)).toMatchObject([
        { type: "timeout", retryable: true },
        { type: "timeout", retryable: true }
      ])
      expect((yield* sandbox.stats).routes.login.calls).toBeGreaterThanOrEqual(4)
    }).pipe(Effect.provide(world({ env: { FORUM_LOGIN_TIMEOUT: "50 millis" } }))))

  it.scopedLive("a 429 asking for 10 minutes (MAX_RETRY_AFTER 60 s): every item fails rate_limited with retryAfterMs within a second", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("news", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 600 } })
      const processor = yield* IntradayTriggersProcessor
      const started = Date.now()
      // The service's retry rules (no override): MAX_RETRY_AFTER applies.
      const { results } = yield* processor.run(Array.from({ length: 6 }, (_, i) => ({ triggerKey: `t${i}` })))
      expect(Date.now() - started).toBeLessThan(2_000)
      for (const r of results) {
        const error = errorOf(r)
        expect(error?.type).toBe("rate_limited")
        expect(error?.retryAfterMs).toBeGreaterThanOrEqual(599_000)
        // (the budget's pause adds up to 250 ms of jitter, so that waiters do not all come back at once)
        expect(error?.retryAfterMs).toBeLessThanOrEqual(600_250)
      }
      // The pause is shared: items that came to the news budget after the first 429 never called it.
      expect((yield* sandbox.stats).routes.news.calls).toBeLessThanOrEqual(3)
    }).pipe(Effect.provide(world({ env: { MAX_RETRY_AFTER: "60" } }))))
})

describe("secrets", () => {
  it.scopedLive("API keys and passwords never reach logs, errors or results", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const capture = Logger.make(({ message, annotations }) => {
        lines.push(JSON.stringify({ message, annotations: [...annotations] }))
      })
      const sandbox = yield* Sandbox
      yield* sandbox.setKnobs("chat", { errorRate: 1, errorStatus: 401 })
      yield* sandbox.setKnobs("news", { rateLimitRate: 1 })
      const posts = yield* PostGenerationProcessor
      const triggers = yield* IntradayTriggersProcessor
      const interactions = yield* InteractionsProcessor
      const outputs = yield* Effect.all([
        posts.run([{ kolSerial: "101", stockCode: "2330" }], { retry: quickRetry }),
        triggers.run([{ triggerKey: "limit_up" }], { retry: noRetry }),
        interactions.run([{ postId: "p", articleId: "a", kolSerial: "103" }, { postId: "q", articleId: "b", kolSerial: "101" }])
      ]).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Logger.withMinimumLogLevel(LogLevel.All))
      const everything = lines.join("\n") + JSON.stringify(outputs)
      expect(lines.length).toBeGreaterThan(0)
      for (const secret of ["sk-test-llm-key", "news-test-key", "pw-101", "pw-102"]) {
        expect(everything).not.toContain(secret)
      }
    }).pipe(Effect.provide(world())))
})
