/**
 * Retry semantics over HTTP, end to end against the real service on 127.0.0.1 (port 0) and an
 * in-process sandbox. `deadlineSeconds`: the batch routes carry it (query on the intraday route, body
 * on the others), finished results are kept, the rest ends `deadline_exceeded`, and a job resumed
 * after a restart keeps the deadline it began with, measured from its stored start.
 * `MAX_RETRY_AFTER`: an upstream asking for a long wait ends a sync request at once, each item
 * `rate_limited` with `retryAfterMs`.
 */
import { HttpServer } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Logger, LogLevel, Schema, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Server from "../src/http/Server.js"
import { AnyItemResult, JobOptions } from "../src/jobs/Model.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { eventually, json, raw, rawJson, Service, serviceLayer } from "./support/http.js"

/** Just what these tests read of a job, from the raw JSON (not the typed client, whose shape may grow). */
const JobAnswer = Schema.Struct({
  id: Schema.String,
  status: Schema.String,
  options: JobOptions,
  results: Schema.Array(AnyItemResult)
})
const decodeJob = Schema.decodeUnknown(JobAnswer)
/** A 202 answer: the job without results. */
const decodeAccepted = Schema.decodeUnknown(Schema.Struct({ id: Schema.String, options: JobOptions }))

const typeOf = (r: AnyItemResult) => (r.status === "succeeded" ? "succeeded" : r.error.type)

const triggers = (n: number) => Array.from({ length: n }, (_, i) => ({ triggerKey: `t${i}` }))

describe("deadlineSeconds over HTTP", () => {
  it.live("intraday: ?deadlineSeconds ends the batch then — finished results kept, unstarted items deadline_exceeded without a call", () =>
    Effect.gen(function* () {
      const { url } = yield* Service
      const sandbox = yield* Sandbox.Sandbox
      yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 400 } })
      const started = Date.now()
      const response = yield* rawJson(`${url}/api/intraday/parallel/execute-multiple?maxConcurrent=1&deadlineSeconds=1`, "POST", triggers(12))
      const elapsed = Date.now() - started
      expect(response.status).toBe(200)
      const job = yield* decodeJob(json(response))
      expect(job.options.deadlineSeconds).toBe(1)
      // One at a time, 400 ms each: the 1 s deadline comes long before the 4.8 s the batch needs (with
      // 6 items, 2.4 s, a loaded machine's overhead on top of the deadline came to 2.45 s).
      expect(elapsed).toBeLessThan(4_000)
      expect(job.results.length).toBe(12)
      expect(typeOf(job.results[0]!)).toBe("succeeded")
      expect(job.results.every((r) => ["succeeded", "deadline_exceeded"].includes(typeOf(r)))).toBe(true)
      const last = job.results[11]!
      expect(last).toMatchObject({ status: "failed", attempts: 0, error: { type: "deadline_exceeded", retryable: true } })
      expect((yield* sandbox.stats).routes.screen.calls).toBeLessThan(12)
    }).pipe(Effect.provide(serviceLayer())))

  it.live("interactions and post generation take deadlineSeconds in the body; a bad value is a 400", () =>
    Effect.gen(function* () {
      const { url } = yield* Service
      const sandbox = yield* Sandbox.Sandbox
      yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 300 } })
      const posts = Array.from({ length: 5 }, (_, i) => ({ postId: `p${i}`, articleId: `a${i}`, kolSerial: "101" }))
      const answer = yield* rawJson(`${url}/api/interactions/fetch-all-interactions`, "POST", {
        posts,
        maxConcurrent: 1,
        deadlineSeconds: 0.5
      })
      expect(answer.status).toBe(200)
      const job = yield* decodeJob(json(answer))
      expect(job.options.deadlineSeconds).toBe(0.5)
      expect(job.results.map(typeOf).filter((t) => t === "deadline_exceeded").length).toBeGreaterThanOrEqual(3)

      const accepted = yield* rawJson(
        `${url}/api/post/batch-generate-stream`,
        "POST",
        { requests: [{ kolSerial: "101", stockCode: "2330" }], deadlineSeconds: 30 },
        { prefer: "respond-async" }
      )
      expect(accepted.status).toBe(202)
      expect((yield* decodeAccepted(json(accepted))).options).toEqual({ deadlineSeconds: 30 })

      for (const bad of [0, -1, "10", 90_000]) {
        const r = yield* rawJson(`${url}/api/interactions/fetch-all-interactions`, "POST", { posts, deadlineSeconds: bad })
        expect({ bad, status: r.status }).toEqual({ bad, status: 400 })
      }
      const badQuery = yield* rawJson(`${url}/api/intraday/parallel/execute-multiple?deadlineSeconds=soon`, "POST", triggers(1))
      expect(badQuery.status).toBe(400)
    }).pipe(Effect.provide(serviceLayer())))

  it.live("a job resumed after a restart keeps its deadline from its stored start: resumed past it, it ends at once without calling", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 250 } })
        const dataDir = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-deadline-"))),
          (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
        )
        const env = {
          HOST: "127.0.0.1",
          PORT: "0",
          DATA_DIR: dataDir,
          SHUTDOWN_GRACE_PERIOD: "1 second",
          FORUM_API_URL: sandbox.url,
          LLM_BASE_URL: sandbox.url,
          MARKET_API_URL: sandbox.url,
          NEWS_API_URL: sandbox.url,
          NEWS_API_KEY: "news-key"
        }
        /** One life of the service on `dataDir`: its URL, and how to stop it (a graceful shutdown). */
        const start = Effect.gen(function* () {
          const scope = yield* Scope.make()
          const context = yield* Layer.buildWithScope(
            Server.layer.pipe(
              Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))),
              Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
            ),
            scope
          )
          const url = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provide(context))
          return { url, stop: Scope.close(scope, Exit.void) }
        })

        // 12 items one at a time (3 s of work) with a 2 s deadline; stopped after ~0.6 s.
        const first = yield* start
        const submitted = yield* rawJson(
          `${first.url}/api/intraday/parallel/execute-multiple?maxConcurrent=1&deadlineSeconds=2`,
          "POST",
          triggers(12),
          { prefer: "respond-async" }
        )
        expect(submitted.status).toBe(202)
        const { id } = yield* decodeAccepted(json(submitted))
        const submittedAt = Date.now()
        yield* Effect.sleep("600 millis")
        yield* first.stop
        const callsBefore = (yield* sandbox.stats).routes.screen.calls
        expect(callsBefore).toBeGreaterThan(0)
        expect(callsBefore).toBeLessThan(12)

        // Back after the deadline (2 s from the job's start): a deadline restarted with this run
        // would let the remaining items run; the stored one ends them at once.
        yield* Effect.sleep(Math.max(0, submittedAt + 2_300 - Date.now()))
        const second = yield* start
        const job = yield* eventually(
          raw(`${second.url}/api/jobs/${id}`).pipe(
            Effect.flatMap((r) => decodeJob(json(r))),
            Effect.filterOrFail((j) => j.status === "completed", () => "not yet")
          ),
          "10 seconds"
        )
        yield* second.stop
        expect(job.results.length).toBe(12)
        const types = job.results.map(typeOf)
        expect(types.filter((t) => t === "succeeded").length).toBeGreaterThan(0)
        expect(types.slice(-3)).toEqual(["deadline_exceeded", "deadline_exceeded", "deadline_exceeded"])
        expect(job.results.slice(-3).map((r) => r.attempts)).toEqual([0, 0, 0])
        expect((yield* sandbox.stats).routes.screen.calls).toBe(callsBefore)
      })
    ).pipe(Effect.provide(Sandbox.layer({ seed: 7 }))))
})

describe("MAX_RETRY_AFTER over HTTP", () => {
  it.live("a 429 with Retry-After: 600 answers the sync request within a second: every item rate_limited with retryAfterMs, the pause kept", () =>
    Effect.gen(function* () {
      const { url } = yield* Service
      const sandbox = yield* Sandbox.Sandbox
      yield* sandbox.setKnobs("news", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 600 } })
      const started = Date.now()
      const response = yield* rawJson(`${url}/api/intraday/parallel/execute-multiple`, "POST", triggers(8))
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(response.status).toBe(200)
      const job = yield* decodeJob(json(response))
      for (const r of job.results) {
        expect(r).toMatchObject({ status: "failed", error: { type: "rate_limited", retryable: true } })
        const wait = r.status === "failed" ? r.error.retryAfterMs : undefined
        expect(wait).toBeGreaterThanOrEqual(598_000)
        expect(wait).toBeLessThanOrEqual(600_250)
      }
      // The news budget stays paused (nobody waits it out): GET /api/upstreams shows when it ends.
      const upstreams = yield* Schema.decodeUnknown(Schema.Array(Schema.Struct({ key: Schema.String, cooldownUntil: Schema.optional(Schema.String) })))(
        json(yield* raw(`${url}/api/upstreams`))
      )
      const until = upstreams.find((u) => u.key === "news")?.cooldownUntil
      expect(Date.parse(until ?? "") - Date.now()).toBeGreaterThan(590_000)
    }).pipe(Effect.provide(serviceLayer({ env: { MAX_RETRY_AFTER: "60 seconds" } }))))
})
