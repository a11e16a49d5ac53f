/**
 * The HTTP service end to end, in process: `Server.layer` on 127.0.0.1 (port 0) over real sockets,
 * its four upstreams played by an in-process sandbox, its config from a Map, its logs captured.
 * Every test gets a fresh service (fresh database, breakers, processors) — starting one takes
 * ~150 ms — so tests do not depend on each other's jobs, posts or settings.
 */
import { HttpClientRequest, type HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Schema, Stream } from "effect"
import { JobAccepted } from "../src/http/Api.js"
import * as Client from "../src/http/Client.js"
import { JobDetail, JobEvent, JobView, type AnyItemResult } from "../src/jobs/Model.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import {
  chunkedPost,
  eventually,
  json,
  raw,
  rawJson,
  secrets,
  seenBodies,
  Service,
  serviceLayer,
  streamLines,
  waitForJob as waitForJobAt,
  type RawResponse
} from "./support/http.js"

// ---- helpers -------------------------------------------------------------------------------------

type Env = Readonly<Record<string, string>>

/** Runs `self` against a fresh service (and sandbox) built with the base config plus `env`. */
const withService = <A, E>(
  self: Effect.Effect<A, E, Service | Sandbox.Sandbox | HttpClient.HttpClient>,
  env: Env = {}
) => Effect.provide(self, serviceLayer({ env }))

const decodeDetail = (r: RawResponse) => Schema.decodeUnknown(JobDetail)(json(r))
const decodeView = (r: RawResponse) => Schema.decodeUnknown(JobView)(json(r))
const decodeAccepted = (r: RawResponse) => Schema.decodeUnknown(JobAccepted)(json(r))
const decodeEvent = Schema.decodeUnknown(Schema.parseJson(JobEvent))
const ErrorBody = Schema.Struct({
  _tag: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })))
})
const decodeError = (r: RawResponse) => Schema.decodeUnknown(ErrorBody)(json(r))

const errorOf = (r: AnyItemResult | undefined) => (r !== undefined && r.status !== "succeeded" ? r.error : undefined)
const valueOf = (r: AnyItemResult | undefined): unknown => (r !== undefined && r.status === "succeeded" ? r.value : undefined)

const GeneratedValue = Schema.Struct({ content: Schema.String, model: Schema.String })
const TriggerValue = Schema.Struct({ triggerKey: Schema.String, stocks: Schema.Array(Schema.Unknown), news: Schema.Array(Schema.Unknown) })

const posts = (prefix: string, n: number, kols: ReadonlyArray<string> = ["101", "102"]) =>
  Array.from({ length: n }, (_, i) => ({ postId: `${prefix}-p${i}`, articleId: `${prefix}-a${i}`, kolSerial: kols[i % kols.length] ?? "101" }))

const requests = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, kolSerial: i % 2 === 0 ? "101" : "102", stockCode: "2330", stockName: "台積電" }))

const url = Effect.map(Service, (s) => s.url)

/** GET /api/jobs/{id} on the service under test until `done` holds. */
const waitForJob = (id: string, done: (job: JobDetail) => boolean, within: Duration.DurationInput = "10 seconds") =>
  Effect.flatMap(url, (base) => waitForJobAt(base, id, done, within))

const stats = Effect.flatMap(Sandbox.Sandbox, (s) => s.stats)

/** NDJSON lines → events. */
const eventsOf = (lines: ReadonlyArray<{ readonly line: string }>) =>
  Effect.forEach(lines.filter((l) => l.line.trim() !== ""), (l) => decodeEvent(l.line))

interface SseFrame {
  readonly event: string | undefined
  readonly id: string | undefined
  readonly data: string | undefined
}
const sseFrames = (text: string): ReadonlyArray<SseFrame> =>
  text
    .split("\n\n")
    .filter((frame) => frame.trim() !== "")
    .map((frame) => {
      const lines = frame.split("\n")
      const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2)
      return { event: field("event"), id: field("id"), data: field("data") }
    })

/** started, then (item, progress) per item, then completed. */
const expectEventOrder = (events: ReadonlyArray<JobEvent>, items: number) => {
  expect(events.map((e) => e.type)).toEqual([
    "started",
    ...Array.from({ length: items }, () => ["item", "progress"] as const).flat(),
    "completed"
  ])
}

const stackFrame = /\n\s+at |\bat [^\s]+ \(.*:\d+:\d+\)|node_modules/

// ---- 1. batch routes, synchronous ----------------------------------------------------------------

describe("batch routes answered synchronously", () => {
  it.live("execute-multiple: JSON array body, maxConcurrent/timeoutSeconds from the query, results in input order", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 120 } })
        const triggers = [
          { triggerKey: "limit_up", limit: 3 },
          { triggerKey: "volume_surge", newsKeywords: ["爆量"] },
          { triggerKey: "gap_down", limit: 5 },
          { triggerKey: "custom_key-1", limit: 1 }
        ]
        const response = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple?maxConcurrent=2&timeoutSeconds=5`, "POST", triggers)
        expect(response.status, response.body).toBe(200)
        const job = yield* decodeDetail(response)
        expect(response.headers.get("content-location")).toBe(`/api/jobs/${job.id}`)
        expect(job).toMatchObject({
          kind: "intraday-triggers",
          status: "completed",
          success: true,
          total: 4,
          completed: 4,
          succeeded: 4,
          failed: 0,
          options: { maxConcurrent: 2, timeoutSeconds: 5 }
        })
        expect(job.results.map((r) => r.index)).toEqual([0, 1, 2, 3])
        for (const [i, result] of job.results.entries()) {
          expect(result.status).toBe("succeeded")
          // Two calls made: the market screen, then the news search.
          expect(result.attempts).toBe(2)
          expect(result.durationMs).toBeGreaterThanOrEqual(100)
          const value = yield* Schema.decodeUnknown(TriggerValue)(valueOf(result))
          expect(value.triggerKey).toBe(triggers[i]?.triggerKey)
        }
        const limits = yield* Effect.forEach(job.results, (r) => Schema.decodeUnknown(TriggerValue)(valueOf(r)))
        expect(limits.map((v) => v.stocks.length)).toEqual([3, 10, 5, 1])
        const s = yield* stats
        // maxConcurrent=2 from the query really bounded the calls.
        expect(s.routes.screen.peakInFlight).toBe(2)
        expect(s.routes.screen.byId).toEqual({ limit_up: 1, volume_surge: 1, gap_down: 1, "custom_key-1": 1 })
        expect(s.routes.news.calls).toBe(4)
      })
    ))

  it.live("execute-multiple through the typed client", () =>
    withService(
      Effect.gen(function* () {
        const client = yield* Client.make(yield* url)
        const answer = yield* client.batches.executeMultiple({
          payload: [{ triggerKey: "limit_up" }, { triggerKey: "limit_down" }],
          urlParams: { maxConcurrent: 1 },
          headers: {}
        })
        expect("results" in answer).toBe(true)
        if (!("results" in answer)) return
        expect(answer).toMatchObject({ total: 2, succeeded: 2, success: true, options: { maxConcurrent: 1 } })
        expect(answer.results.map((r) => r.index)).toEqual([0, 1])
        expect((yield* stats).routes.screen.peakInFlight).toBe(1)
      })
    ))

  it.live("fetch-all-interactions with posts: successes, wrong password, missing credentials and the skip list, per item", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const input = [
          { postId: "ok-1", articleId: "art-1", kolSerial: "101" },
          { postId: "bad-pw", articleId: "art-2", kolSerial: "103" },
          { postId: "ok-2", articleId: "art-3", kolSerial: "102" },
          { postId: "no-creds", articleId: "art-4", kolSerial: "105" },
          { postId: "skipped", articleId: "art-5", kolSerial: "104" },
          { postId: "ok-3", articleId: "art-6", kolSerial: "101" }
        ]
        const response = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: input, maxConcurrent: 3 })
        expect(response.status, response.body).toBe(200)
        const job = yield* decodeDetail(response)
        expect(job).toMatchObject({
          kind: "interactions",
          status: "completed",
          success: false,
          total: 6,
          completed: 6,
          succeeded: 3,
          failed: 2,
          skipped: 1,
          cancelled: 0,
          options: { maxConcurrent: 3 }
        })
        expect(job.results.map((r) => [r.index, r.id, r.status])).toEqual([
          [0, "ok-1", "succeeded"],
          [1, "bad-pw", "failed"],
          [2, "ok-2", "succeeded"],
          [3, "no-creds", "failed"],
          [4, "skipped", "skipped"],
          [5, "ok-3", "succeeded"]
        ])
        for (const r of job.results) {
          expect(typeof r.durationMs).toBe("number")
          expect(r.attempts).toBeLessThanOrEqual(1)
        }
        expect(valueOf(job.results[0])).toMatchObject({ views: expect.any(Number), likes: expect.any(Number) })
        // A permanent failure is not retried: the account's login (shared, nobody's call) was refused
        // once and no interactions call was made (the login count is checked below).
        expect(job.results[1]?.attempts).toBe(0)
        expect(errorOf(job.results[1])).toMatchObject({ type: "upstream_rejected", retryable: false })
        expect(errorOf(job.results[1])?.message).toContain("103")
        expect(errorOf(job.results[3])).toMatchObject({ type: "upstream_rejected", retryable: false })
        expect(errorOf(job.results[3])?.message).toContain("KOL_105_EMAIL")
        expect(errorOf(job.results[4])?.type).toBe("skipped")
        expect(errorOf(job.results[4])?.message).toContain("104")
        expect(response.body).not.toContain(secrets.kol101Password)
        const s = yield* stats
        // The skipped account and the one without credentials never reached the forum.
        expect(s.routes.interactions.byId).toEqual({ "art-1": 1, "art-3": 1, "art-6": 1 })
        expect(s.routes.login.byId["kol103@example.com"]).toBe(1)
        expect(s.logins).toEqual({ "kol101@example.com": 1, "kol102@example.com": 1 })
      }),
      { INTERACTIONS_SKIP_KOLS: "104, 999" }
    ))

  it.live("fetch-all-interactions without a body runs every tracked post that has an articleId", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const imported = yield* rawJson(`${base}/api/posts`, "POST", {
          posts: [
            { postId: "t-b", articleId: "ta-b", kolSerial: "102" },
            { postId: "t-a", articleId: "ta-a", kolSerial: "101" }
          ]
        })
        expect(imported.status, imported.body).toBe(200)
        expect(json(imported)).toEqual({ imported: 2 })
        // A generated post is tracked too, but has no articleId: it must not be fetched.
        const generated = yield* rawJson(`${base}/api/post/batch-generate-stream`, "POST", {
          requests: [{ id: "gen-no-article", kolSerial: "101", stockCode: "2330" }]
        })
        expect(generated.status).toBe(200)
        const post = yield* raw(`${base}/api/posts/gen-no-article`)
        expect(post.status).toBe(200)

        const response = yield* raw(`${base}/api/interactions/fetch-all-interactions`, { method: "POST" })
        expect(response.status, response.body).toBe(200)
        const job = yield* decodeDetail(response)
        expect(job).toMatchObject({ kind: "interactions", status: "completed", total: 2, succeeded: 2, success: true })
        // Tracked posts in (created_at, post_id) order.
        expect(job.results.map((r) => [r.index, r.id, r.status])).toEqual([
          [0, "t-a", "succeeded"],
          [1, "t-b", "succeeded"]
        ])
        expect((yield* stats).routes.interactions.byId).toEqual({ "ta-a": 1, "ta-b": 1 })

        // An empty object body, with limits only, means the same.
        const limitsOnly = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { maxConcurrent: 1 })
        expect(limitsOnly.status, limitsOnly.body).toBe(200)
        const second = yield* decodeDetail(limitsOnly)
        expect(second).toMatchObject({ total: 2, succeeded: 2, options: { maxConcurrent: 1 } })
      })
    ))
})

// ---- 2. streaming --------------------------------------------------------------------------------

describe("batch-generate-stream", () => {
  it.live("NDJSON: started, item+progress per item, completed — and the events arrive as items finish", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("chat", { latency: { kind: "fixed", ms: 600 } })
        const { status, headers, lines } = yield* streamLines(`${base}/api/post/batch-generate-stream`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ requests: requests("nd", 6), maxConcurrent: 2 })
        })
        expect(status).toBe(200)
        expect(headers.get("content-type")).toContain("application/x-ndjson")
        const events = yield* eventsOf(lines)
        expectEventOrder(events, 6)
        const timed = lines.filter((l) => l.line.trim() !== "")
        const firstItemAt = timed[events.findIndex((e) => e.type === "item")]?.at ?? Number.NaN
        const completedAt = timed[timed.length - 1]?.at ?? Number.NaN
        // 3 waves of at least 600 ms each (the sandbox's floor, only longer on a loaded machine): the
        // first item is on the wire two waves (≥ 1.2 s) before the end; 600 ms of that is margin.
        expect(completedAt).toBeGreaterThanOrEqual(1_700)
        expect(firstItemAt).toBeLessThan(completedAt - 600)

        const progress = events.flatMap((e) => (e.type === "progress" ? [e] : []))
        expect(progress.map((p) => p.completed)).toEqual([1, 2, 3, 4, 5, 6])
        expect(progress.every((p) => p.total === 6 && p.inFlight <= 2)).toBe(true)
        const items = events.flatMap((e) => (e.type === "item" ? [e] : []))
        expect(items.map((i) => i.seq)).toEqual([0, 1, 2, 3, 4, 5])
        expect(items.map((i) => i.result.index).sort()).toEqual([0, 1, 2, 3, 4, 5])
        for (const item of items) {
          const value = yield* Schema.decodeUnknown(GeneratedValue)(valueOf(item.result))
          expect(value.content.length).toBeGreaterThan(0)
          expect(value.model).toBe("gpt-4o-mini")
        }
        const last = events[events.length - 1]
        expect(last?.type === "completed" ? last.job : undefined).toMatchObject({ status: "completed", succeeded: 6, success: true })
        const started = events[0]
        expect(started).toMatchObject({ type: "started", kind: "post-generation", total: 6 })
        expect(new Set(events.map((e) => e.jobId)).size).toBe(1)
        expect((yield* stats).routes.chat.peakInFlight).toBe(2)
      })
    ))

  it.live("SSE with Accept: text/event-stream: event/id/data frames", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const response = yield* rawJson(
          `${base}/api/post/batch-generate-stream`,
          "POST",
          { requests: requests("sse", 3) },
          { accept: "text/event-stream" }
        )
        expect(response.status).toBe(200)
        expect(response.headers.get("content-type")).toContain("text/event-stream")
        const frames = sseFrames(response.body)
        expect(frames.map((f) => f.event)).toEqual(["started", "item", "progress", "item", "progress", "item", "progress", "completed"])
        for (const frame of frames) {
          const event = yield* decodeEvent(frame.data ?? "")
          expect(event.type).toBe(frame.event)
          expect(frame.id).toBe(event.type === "item" ? String(event.seq) : undefined)
        }
      })
    ))

  it.live("Client.events reads NDJSON and SSE incrementally; Client.jobEvents replays a finished job", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("chat", { latency: { kind: "fixed", ms: 150 } })
        const request = (accept: string) =>
          HttpClientRequest.post(`${base}/api/post/batch-generate-stream`).pipe(
            HttpClientRequest.setHeader("accept", accept),
            HttpClientRequest.bodyUnsafeJson({ requests: requests(`cl-${accept.length}`, 4), maxConcurrent: 2 })
          )
        const ndjson = Chunk.toReadonlyArray(yield* Stream.runCollect(Client.events(request("application/x-ndjson"))))
        expectEventOrder(ndjson, 4)
        const sse = Chunk.toReadonlyArray(yield* Stream.runCollect(Client.events(request("text/event-stream"))))
        expectEventOrder(sse, 4)
        // The first event comes before the batch is done.
        const first = yield* Stream.runHead(Client.events(request("application/x-ndjson")))
        expect(first._tag === "Some" ? first.value.type : undefined).toBe("started")

        const jobId = ndjson[0]?.jobId ?? ""
        const replayed = Chunk.toReadonlyArray(yield* Stream.runCollect(Client.jobEvents(base, jobId)))
        expectEventOrder(replayed, 4)
        expect(replayed.flatMap((e) => (e.type === "item" ? [e.result] : []))).toEqual(
          ndjson.flatMap((e) => (e.type === "item" ? [e.result] : []))
        )
        // A stream request that fails surfaces as a StreamError with the status.
        const bad = yield* Stream.runCollect(
          Client.events(HttpClientRequest.post(`${base}/api/post/batch-generate-stream`).pipe(HttpClientRequest.bodyUnsafeJson({ requests: [] })))
        ).pipe(Effect.flip)
        expect(bad._tag === "StreamError" ? bad.status : undefined).toBe(400)
      })
    ))
})

// ---- 3. async jobs -------------------------------------------------------------------------------

describe("jobs", () => {
  it.live("Prefer: respond-async → 202 + Location; GET /api/jobs/{id} shows it finishing", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 300 } })
        const response = yield* rawJson(
          `${base}/api/interactions/fetch-all-interactions`,
          "POST",
          { posts: posts("async", 4), maxConcurrent: 2 },
          { prefer: "respond-async" }
        )
        // Answered without waiting for the work: before any item finished (below, and not completed).
        expect(response.status, response.body).toBe(202)
        const accepted = yield* decodeAccepted(response)
        expect(response.headers.get("location")).toBe(`/api/jobs/${accepted.id}`)
        expect(accepted.location).toBe(`/api/jobs/${accepted.id}`)
        expect(["pending", "running"]).toContain(accepted.status)
        expect(accepted).toMatchObject({ kind: "interactions", total: 4, completed: 0 })

        const early = yield* decodeDetail(yield* raw(`${base}${accepted.location}`))
        expect(early.status).not.toBe("completed")
        expect(early.results.length).toBeLessThan(4)

        const done = yield* waitForJob(accepted.id, (j) => j.status === "completed")
        expect(done).toMatchObject({ success: true, succeeded: 4, completed: 4 })
        expect(done.results.map((r) => r.index)).toEqual([0, 1, 2, 3])
        expect(done.durationMs).toBeGreaterThanOrEqual(500)
        expect(done.startedAt).toBeDefined()
        expect(done.finishedAt).toBeDefined()

        // Respond-async on the streaming route too.
        const streamed = yield* rawJson(
          `${base}/api/post/batch-generate-stream`,
          "POST",
          { requests: requests("async-gen", 1) },
          { prefer: "respond-async, wait=5" }
        )
        expect(streamed.status).toBe(202)
        expect(streamed.headers.get("location")).toMatch(/^\/api\/jobs\/[0-9a-f-]{36}$/)
      })
    ))

  it.live("GET /api/jobs filters by kind and status and pages with limit/offset", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const client = yield* Client.make(base)
        for (let i = 0; i < 5; i++) {
          const r = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: `t${i}` }])
          expect(r.status).toBe(200)
        }
        const interactions = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("list", 2) })
        expect(interactions.status).toBe(200)
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("chat", { latency: { kind: "fixed", ms: 1_500 } })
        const running = yield* decodeAccepted(
          yield* rawJson(`${base}/api/post/batch-generate-stream`, "POST", { requests: requests("list", 1) }, { prefer: "respond-async" })
        )
        yield* waitForJob(running.id, (j) => j.status === "running")

        const all = yield* client.jobs.list({ urlParams: { limit: 50, offset: 0 } })
        expect(all).toMatchObject({ total: 7, limit: 50, offset: 0 })
        expect(all.jobs).toHaveLength(7)

        const triggers = yield* client.jobs.list({ urlParams: { kind: "intraday-triggers", limit: 50, offset: 0 } })
        expect(triggers.total).toBe(5)
        expect(triggers.jobs.every((j) => j.kind === "intraday-triggers")).toBe(true)

        const completed = yield* client.jobs.list({ urlParams: { status: "completed", limit: 50, offset: 0 } })
        expect(completed.total).toBe(6)
        expect(completed.jobs.every((j) => j.status === "completed")).toBe(true)
        const runningPage = yield* client.jobs.list({ urlParams: { status: "running", kind: "post-generation", limit: 50, offset: 0 } })
        expect(runningPage.jobs.map((j) => j.id)).toEqual([running.id])
        const none = yield* client.jobs.list({ urlParams: { status: "cancelled", limit: 50, offset: 0 } })
        expect(none).toMatchObject({ total: 0, jobs: [] })

        const page1 = yield* client.jobs.list({ urlParams: { kind: "intraday-triggers", limit: 2, offset: 0 } })
        const page2 = yield* client.jobs.list({ urlParams: { kind: "intraday-triggers", limit: 2, offset: 2 } })
        const page3 = yield* client.jobs.list({ urlParams: { kind: "intraday-triggers", limit: 2, offset: 4 } })
        expect([page1.jobs.length, page2.jobs.length, page3.jobs.length]).toEqual([2, 2, 1])
        expect([page1.total, page2.total, page3.total]).toEqual([5, 5, 5])
        expect(page2).toMatchObject({ limit: 2, offset: 2 })
        const paged = [...page1.jobs, ...page2.jobs, ...page3.jobs].map((j) => j.id)
        expect(new Set(paged).size).toBe(5)
        expect(paged).toEqual(triggers.jobs.map((j) => j.id))

        // The same through raw query strings, and invalid parameters are 400s.
        const rawPage = yield* raw(`${base}/api/jobs?kind=intraday-triggers&limit=2&offset=2`)
        expect((json(rawPage) as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id)).toEqual(page2.jobs.map((j) => j.id))
        for (const query of ["limit=0", "limit=201", "offset=-1", "status=done", "kind=nope", "limit=abc"]) {
          const bad = yield* raw(`${base}/api/jobs?${query}`)
          expect(bad.status, query).toBe(400)
          expect((yield* decodeError(bad))._tag).toBe("BadRequest")
        }
        yield* raw(`${base}/api/jobs/${running.id}`, { method: "DELETE" })
      })
    ))

  it.live("GET /api/jobs/{id}/events: a finished job replays (SSE by default, NDJSON on request) and ends", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const done = yield* decodeDetail(
          yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("ev", 3) })
        )
        const sse = yield* raw(`${base}/api/jobs/${done.id}/events`).pipe(Effect.timeout("5 seconds"))
        expect(sse.status).toBe(200)
        expect(sse.headers.get("content-type")).toContain("text/event-stream")
        const frames = sseFrames(sse.body)
        expect(frames.map((f) => f.event)).toEqual(["started", "item", "progress", "item", "progress", "item", "progress", "completed"])
        const sseEvents = yield* Effect.forEach(frames, (f) => decodeEvent(f.data ?? ""))

        const nd = yield* streamLines(`${base}/api/jobs/${done.id}/events`, { headers: { accept: "application/x-ndjson" } }).pipe(
          Effect.timeout("5 seconds")
        )
        expect(nd.headers.get("content-type")).toContain("application/x-ndjson")
        const events = yield* eventsOf(nd.lines)
        expect(events).toEqual(sseEvents)
        expectEventOrder(events, 3)
        expect(events.flatMap((e) => (e.type === "item" ? [e.result] : [])).sort((a, b) => a.index - b.index)).toEqual(done.results)
        const last = events[events.length - 1]
        expect(last?.type === "completed" ? last.job.status : undefined).toBe("completed")

        const missing = yield* raw(`${base}/api/jobs/no-such-job/events`)
        expect(missing.status).toBe(404)

        // SSE reconnect: Last-Event-ID = the seq of the last item seen → only newer events.
        const firstSeq = Number(frames.find((f) => f.event === "item")?.id)
        const resumed = yield* raw(`${base}/api/jobs/${done.id}/events`, { headers: { "last-event-id": String(firstSeq) } })
        const resumedFrames = sseFrames(resumed.body)
        expect(resumedFrames.map((f) => f.event)).toEqual(["item", "progress", "item", "progress", "completed"])
        expect(resumedFrames.filter((f) => f.event === "item").map((f) => Number(f.id))).toEqual([firstSeq + 1, firstSeq + 2])
      })
    ))

  it.live("GET /api/jobs/{id}/events on a running job: replays what is done, then follows live until completed", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("chat", { latency: { kind: "fixed", ms: 600 } })
        const accepted = yield* decodeAccepted(
          yield* rawJson(
            `${base}/api/post/batch-generate-stream`,
            "POST",
            { requests: requests("live", 6), maxConcurrent: 2 },
            { prefer: "respond-async" }
          )
        )
        const partial = yield* waitForJob(accepted.id, (j) => j.completed >= 2)
        expect(partial.status).toBe("running")
        // Polled every 25 ms against 600 ms waves: seen during the second wave, items 4 and 5 unstarted.
        expect(partial.completed).toBeLessThanOrEqual(3)
        const connectedAt = performance.now()
        const { lines } = yield* streamLines(`${base}/api/jobs/${accepted.id}/events`, {
          headers: { accept: "application/x-ndjson" }
        }).pipe(Effect.timeout("10 seconds"))
        const events = yield* eventsOf(lines)
        expect(events[0]?.type).toBe("started")
        expect(events[events.length - 1]?.type).toBe("completed")
        const items = events.flatMap((e) => (e.type === "item" ? [e] : []))
        // Every item exactly once: replayed ones and live ones, no gap, no duplicate.
        expect(items.map((i) => i.seq).sort()).toEqual([0, 1, 2, 3, 4, 5])
        expect(items.map((i) => i.result.index).sort()).toEqual([0, 1, 2, 3, 4, 5])
        const progress = events.flatMap((e) => (e.type === "progress" ? [e.completed] : []))
        expect(progress).toEqual([...progress].sort((a, b) => a - b))
        expect(progress[progress.length - 1]).toBe(6)
        // The replayed part was there at once; the rest came live, as the items finished. At connect
        // time items 4 and 5 had not started, so the end is at least one 600 ms call later; the
        // replayed lines came at least 300 ms before it (300 ms of margin for a loaded machine).
        const timed = lines.filter((l) => l.line.trim() !== "")
        expect(timed[1]?.at ?? Infinity).toBeLessThan((timed[timed.length - 1]?.at ?? 0) - 300)
        expect(performance.now() - connectedAt).toBeGreaterThanOrEqual(550)
        const final = yield* waitForJob(accepted.id, (j) => j.status === "completed")
        expect(final.succeeded).toBe(6)
      })
    ))
})

// ---- 4. idempotency ------------------------------------------------------------------------------

describe("Idempotency-Key", () => {
  it.live("same key + same body → the same job, run once; same key + another body → 409", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 200 } })
        const body = { posts: posts("idem", 3) }
        const submit = (key: string, payload: unknown, prefer = "respond-async") =>
          rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", payload, { prefer, "idempotency-key": key })

        const first = yield* submit("key-1", body)
        expect(first.status).toBe(202)
        const firstJob = yield* decodeAccepted(first)
        expect(firstJob.idempotencyKey).toBe("key-1")
        const again = yield* decodeAccepted(yield* submit("key-1", body))
        expect(again.id).toBe(firstJob.id)
        // Without respond-async the retried request waits for the same job and answers its result.
        const sync = yield* submit("key-1", body, "")
        expect(sync.status).toBe(200)
        const detail = yield* decodeDetail(sync)
        expect(detail.id).toBe(firstJob.id)
        expect(detail.succeeded).toBe(3)
        // Concurrent retries with a fresh key agree on one job too.
        const racing = yield* Effect.all(
          Array.from({ length: 4 }, () => submit("key-2", body)),
          { concurrency: "unbounded" }
        )
        const racingIds = yield* Effect.forEach(racing, (r) => Effect.map(decodeAccepted(r), (a) => a.id))
        expect(new Set(racingIds).size).toBe(1)
        expect(racingIds[0]).not.toBe(firstJob.id)
        yield* waitForJob(racingIds[0] ?? "", (j) => j.status === "completed")

        // Each article ran once per distinct job (key-1 once, key-2 once), not once per request.
        expect((yield* stats).routes.interactions.byId).toEqual({ "idem-a0": 2, "idem-a1": 2, "idem-a2": 2 })

        const conflict = yield* submit("key-1", { posts: posts("idem", 2) })
        expect(conflict.status).toBe(409)
        const error = yield* decodeError(conflict)
        expect(error._tag).toBe("Conflict")
        expect(error.message).toContain("key-1")
        // Different limits are a different request as well.
        expect((yield* submit("key-1", { ...body, maxConcurrent: 1 })).status).toBe(409)
        // And the same key on another route.
        const other = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "x" }], {
          prefer: "respond-async",
          "idempotency-key": "key-1"
        })
        expect(other.status).toBe(409)
        const list = yield* raw(`${base}/api/jobs`)
        expect((json(list) as { total: number }).total).toBe(2)
      })
    ))
})

// ---- 5. cancel -----------------------------------------------------------------------------------

describe("DELETE /api/jobs/{id}", () => {
  it.live("cancels a running job within ~1 s: in-flight calls aborted, unstarted items never sent", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("chat", { latency: { kind: "fixed", ms: 6_000 } })
        const accepted = yield* decodeAccepted(
          yield* rawJson(
            `${base}/api/post/batch-generate-stream`,
            "POST",
            { requests: requests("cancel", 6), maxConcurrent: 2 },
            { prefer: "respond-async" }
          )
        )
        yield* eventually(stats.pipe(Effect.filterOrFail((s) => s.routes.chat.inFlight === 2, () => "not yet")))

        const cancelAt = performance.now()
        const cancel = yield* raw(`${base}/api/jobs/${accepted.id}`, { method: "DELETE" })
        expect(cancel.status, cancel.body).toBe(200)
        expect((yield* decodeView(cancel)).id).toBe(accepted.id)
        // ~1 s when idle; the bound is what tells interrupted calls from finished ones: well under
        // the calls' 6 s latency, with 3 s of margin for a loaded machine.
        const cancelled = yield* waitForJob(accepted.id, (j) => j.status === "cancelled", "4 seconds")
        expect(performance.now() - cancelAt).toBeLessThan(4_000)

        expect(cancelled).toMatchObject({ status: "cancelled", success: false, total: 6, completed: 6, cancelled: 6, succeeded: 0 })
        expect(cancelled.results.map((r) => [r.index, r.status])).toEqual(
          Array.from({ length: 6 }, (_, i) => [i, "cancelled"])
        )
        expect(cancelled.results.every((r) => errorOf(r)?.type === "cancelled")).toBe(true)
        expect(cancelled.results.filter((r) => r.attempts === 0)).toHaveLength(4)

        // The two calls in flight were aborted at the sandbox; the four others were never sent.
        const s = yield* eventually(stats.pipe(Effect.filterOrFail((s) => s.routes.chat.aborted >= 2, () => "not yet")), "2 seconds")
        expect(s.routes.chat.calls).toBe(2)
        expect(s.routes.chat.aborted).toBe(2)
        expect(s.routes.chat.inFlight).toBe(0)
        yield* Effect.sleep("300 millis")
        expect((yield* stats).routes.chat.calls).toBe(2)

        // Cancelling again is harmless; an unknown job is a 404.
        const again = yield* raw(`${base}/api/jobs/${accepted.id}`, { method: "DELETE" })
        expect(again.status).toBe(200)
        expect((yield* decodeView(again)).status).toBe("cancelled")
        expect((yield* raw(`${base}/api/jobs/nope`, { method: "DELETE" })).status).toBe(404)
      })
    ))
})

// ---- 6. posts ------------------------------------------------------------------------------------

describe("posts", () => {
  it.live("imported posts keep the latest interactions and their history; generated posts are stored; unknown → 404", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const tracked = [
          { postId: "post-1", articleId: "article-1", kolSerial: "101" },
          { postId: "post-2", articleId: "article-2", kolSerial: "102" }
        ]
        const imported = yield* rawJson(`${base}/api/posts`, "POST", { posts: tracked })
        expect(imported.status).toBe(200)
        expect(json(imported)).toEqual({ imported: 2 })
        const fresh = yield* raw(`${base}/api/posts/post-1`)
        expect(fresh.status).toBe(200)
        expect(json(fresh)).toMatchObject({ postId: "post-1", articleId: "article-1", kolSerial: "101", source: "imported", history: [] })
        expect(json(fresh)).not.toHaveProperty("interactions")

        const runs: Array<JobDetail> = []
        for (let i = 0; i < 2; i++) {
          const r = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: tracked })
          expect(r.status).toBe(200)
          runs.push(yield* decodeDetail(r))
          yield* Effect.sleep("20 millis")
        }
        const client = yield* Client.make(base)
        const post = yield* client.posts.get({ path: { id: "post-1" } })
        expect(post.history).toHaveLength(2)
        expect(post.history.map((h) => h.jobId)).toEqual(runs.map((r) => r.id))
        expect(post.interactions).toMatchObject(valueOf(runs[1]?.results[0]) as object)
        expect(post.interactions?.fetchedAt).toBe(post.history[1]?.fetchedAt)
        expect(post.history[0]).toMatchObject(valueOf(runs[0]?.results[0]) as object)

        const generated = yield* rawJson(`${base}/api/post/batch-generate-stream`, "POST", {
          requests: [
            { id: "gen-1", kolSerial: "101", stockCode: "2454", stockName: "聯發科", trigger: "limit_up" },
            { kolSerial: "102", stockCode: "2330" }
          ]
        })
        expect(generated.status).toBe(200)
        const events = yield* eventsOf(generated.body.split("\n").map((line) => ({ line })))
        const items = events.flatMap((e) => (e.type === "item" ? [e] : []))
        const jobId = events[0]?.jobId ?? ""
        const contentOf = (index: number) => {
          const value = valueOf(items.find((i) => i.result.index === index)?.result)
          return Schema.decodeUnknownSync(GeneratedValue)(value).content
        }
        const g1 = yield* client.posts.get({ path: { id: "gen-1" } })
        expect(g1).toMatchObject({ postId: "gen-1", kolSerial: "101", stockCode: "2454", source: "generated", jobId, history: [] })
        expect(g1.content).toBe(contentOf(0))
        expect(g1.content?.length ?? 0).toBeGreaterThan(0)
        const unnamed = yield* client.posts.get({ path: { id: `${jobId}-1` } })
        expect(unnamed).toMatchObject({ kolSerial: "102", stockCode: "2330", source: "generated", content: contentOf(1) })

        const missing = yield* raw(`${base}/api/posts/no-such-post`)
        expect(missing.status).toBe(404)
        const error = yield* decodeError(missing)
        expect(error).toMatchObject({ _tag: "NotFound" })
        expect(error.message).toContain("no-such-post")
        const invalid = yield* rawJson(`${base}/api/posts`, "POST", { posts: [{ postId: "x", kolSerial: "101" }] })
        expect(invalid.status).toBe(400)
        expect((yield* decodeError(invalid)).issues?.map((i) => i.path)).toContain("posts.0.articleId")
      })
    ))
})

// ---- 7. processors and breakers ------------------------------------------------------------------

describe("processors and breakers", () => {
  it.live("GET /api/processors shows the defaults; PATCH changes the limit of a run already going; bad PATCHes are 404/400", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const client = yield* Client.make(base)
        const sandbox = yield* Sandbox.Sandbox
        expect(yield* client.processors.list()).toEqual([
          { name: "interactions", maxConcurrent: 3, timeoutSeconds: 30 },
          { name: "post_generation", maxConcurrent: 2, timeoutSeconds: 120 },
          { name: "intraday_triggers", maxConcurrent: 3, timeoutSeconds: 30 }
        ])

        // A run started at the default limit (3), with no limit of its own: slow calls, many items.
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 300 } })
        const started = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("pc", 40) }, {
          prefer: "respond-async"
        })
        expect(started.status, started.body).toBe(202)
        const job = yield* decodeAccepted(started)
        const inFlight = Effect.map(stats, (s) => s.routes.interactions)
        const running = Effect.map(client.jobs.get({ path: { id: job.id }, urlParams: { results: 0 } }), (j) => j.status)
        /** Waits until the sandbox sees exactly `n` interactions calls in flight (polled every 25 ms). */
        const inFlightReaches = (n: number) =>
          eventually(Effect.filterOrFail(inFlight, (r) => r.inFlight === n, (r) => `in flight ${r.inFlight}, waiting for ${n}`), "20 seconds")

        yield* inFlightReaches(3)
        expect((yield* inFlight).peakInFlight).toBe(3)

        // Raised while it runs: the same run goes up to 5 calls at once (the forum budget's ceiling).
        const raised = yield* rawJson(`${base}/api/processors/interactions`, "PATCH", { maxConcurrent: 5 })
        expect(raised.status, raised.body).toBe(200)
        expect(json(raised)).toEqual({ name: "interactions", maxConcurrent: 5, timeoutSeconds: 30 })
        expect((yield* client.processors.list())[0]).toEqual({ name: "interactions", maxConcurrent: 5, timeoutSeconds: 30 })
        yield* inFlightReaches(5)
        expect(yield* running).toBe("running")

        // Lowered while it runs: calls in flight finish, no new one starts until only 1 is left, then 1 at a time.
        const lowered = yield* rawJson(`${base}/api/processors/interactions`, "PATCH", { maxConcurrent: 1 })
        expect(json(lowered)).toEqual({ name: "interactions", maxConcurrent: 1, timeoutSeconds: 30 })
        yield* inFlightReaches(1)
        yield* sandbox.reset
        const callsAt = (yield* inFlight).calls
        yield* eventually(Effect.filterOrFail(inFlight, (r) => r.calls >= callsAt + 3, () => "fewer than 3 more calls"), "20 seconds")
        expect((yield* inFlight).peakInFlight).toBe(1)
        expect(yield* running).toBe("running")

        // Raised again so it finishes: every item of the one run succeeded.
        yield* rawJson(`${base}/api/processors/interactions`, "PATCH", { maxConcurrent: 5 })
        const done = yield* waitForJob(job.id, (j) => j.status === "completed", "30 seconds")
        expect(done.succeeded).toBe(40)

        const timeout = yield* rawJson(`${base}/api/processors/post_generation`, "PATCH", { timeoutSeconds: 45 })
        expect(json(timeout)).toEqual({ name: "post_generation", maxConcurrent: 2, timeoutSeconds: 45 })

        const unknown = yield* rawJson(`${base}/api/processors/nope`, "PATCH", { maxConcurrent: 2 })
        expect(unknown.status).toBe(404)
        expect((yield* decodeError(unknown)).message).toContain("nope")
        const tooMany = yield* rawJson(`${base}/api/processors/interactions`, "PATCH", { maxConcurrent: 1000 })
        expect(tooMany.status).toBe(400)
        const error = yield* decodeError(tooMany)
        expect(error.message).toContain("maxConcurrent")
        expect(error.issues?.map((i) => i.path)).toEqual(["maxConcurrent"])
        // Nothing changed by the rejected PATCH.
        expect((yield* client.processors.list())[0]?.maxConcurrent).toBe(5)
      })
    ))

  it.live("GET /api/breakers lists the four upstreams; a dead market opens the market breaker", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const client = yield* Client.make(base)
        const initial = yield* client.processors.breakers()
        expect(initial.map((b) => [b.key, b.status])).toEqual([
          ["forum", "closed"],
          ["llm", "closed"],
          ["market", "closed"],
          ["news", "closed"]
        ])
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("screen", { errorRate: 1 })
        const accepted = yield* decodeAccepted(
          yield* rawJson(
            `${base}/api/intraday/parallel/execute-multiple?maxConcurrent=3`,
            "POST",
            [{ triggerKey: "b1" }, { triggerKey: "b2" }, { triggerKey: "b3" }, { triggerKey: "b4" }],
            { prefer: "respond-async" }
          )
        )
        const opened = yield* eventually(
          client.processors.breakers().pipe(
            Effect.filterOrFail((all) => all.some((b) => b.key === "market" && b.status === "open"), () => "not yet")
          ),
          "5 seconds"
        )
        const market = opened.find((b) => b.key === "market")
        expect(market?.retryAfterMs).toBeGreaterThan(0)
        expect(opened.find((b) => b.key === "news")?.status).toBe("closed")
        expect(opened.find((b) => b.key === "forum")?.status).toBe("closed")
        const breakersRaw = yield* raw(`${base}/api/breakers`)
        expect(breakersRaw.status).toBe(200)
        // Every first attempt reached the market; no news call was made for a failed screen.
        const s = yield* stats
        expect(s.routes.screen.calls).toBeGreaterThanOrEqual(3)
        expect(s.routes.news.calls).toBe(0)
        yield* raw(`${base}/api/jobs/${accepted.id}`, { method: "DELETE" })
        yield* waitForJob(accepted.id, (j) => j.status === "cancelled", "3 seconds")
      })
    ))
})

// ---- 8. errors -----------------------------------------------------------------------------------

/** A raw request whose body is kept for the "no stack frames" check. */
const sendWith = (base: string, bodies: Array<string>) => (path: string, method: string, body?: string, headers: Record<string, string> = {}) =>
  Effect.tap(
    raw(`${base}${path}`, { method, headers: { "content-type": "application/json", ...headers }, ...(body === undefined ? {} : { body }) }),
    (r) => Effect.sync(() => bodies.push(r.body))
  )

const expectNoStackFrames = (bodies: ReadonlyArray<string>, atLeast: number) => {
  expect(bodies.length).toBeGreaterThanOrEqual(atLeast)
  for (const body of bodies) {
    expect(body.length).toBeGreaterThan(0)
    expect(body).not.toMatch(stackFrame)
  }
}

const bigBody = JSON.stringify({ posts: posts("big", 40) })

describe("errors", () => {
  it.live("malformed JSON → 400; schema errors → 400 with every issue and its path; unknown fields → 400", () =>
    withService(
      Effect.gen(function* () {
        const bodies: Array<string> = []
        const send = sendWith(yield* url, bodies)

        const malformed = yield* send("/api/posts", "POST", `{"posts": [`)
        expect(malformed.status).toBe(400)
        expect(malformed.headers.get("content-type")).toContain("application/json")
        expect(yield* decodeError(malformed)).toMatchObject({ _tag: "BadRequest", message: expect.stringMatching(/json/i) })
        const malformedBatch = yield* send("/api/intraday/parallel/execute-multiple", "POST", `[{"triggerKey": }]`)
        expect(malformedBatch.status).toBe(400)
        expect((yield* decodeError(malformedBatch))._tag).toBe("BadRequest")

        // Three bad fields in one request: every one is reported with its path.
        const invalid = yield* send(
          "/api/post/batch-generate-stream",
          "POST",
          JSON.stringify({ requests: [{ kolSerial: "not a serial!", stockCode: "$$$" }], maxConcurrent: 0 })
        )
        expect(invalid.status).toBe(400)
        const invalidError = yield* decodeError(invalid)
        expect(invalidError._tag).toBe("BadRequest")
        const paths = invalidError.issues?.map((i) => i.path) ?? []
        expect([...paths].sort()).toEqual(["maxConcurrent", "requests.0.kolSerial", "requests.0.stockCode"])
        expect(invalidError.message).toContain("requests.0.kolSerial")
        expect(invalidError.message).toContain("requests.0.stockCode")
        expect(invalidError.message).toContain("maxConcurrent")

        const wrongItems = yield* send(
          "/api/intraday/parallel/execute-multiple",
          "POST",
          JSON.stringify([{ triggerKey: "ok" }, { triggerKey: "bad key" }, { triggerKey: "x", limit: 500 }])
        )
        expect(wrongItems.status).toBe(400)
        expect((yield* decodeError(wrongItems)).issues?.map((i) => i.path)).toEqual(["1.triggerKey", "2.limit"])

        const unknownField = yield* send(
          "/api/posts",
          "POST",
          JSON.stringify({ posts: [{ postId: "p", articleId: "a", kolSerial: "101" }], extra: true })
        )
        expect(unknownField.status).toBe(400)
        expect((yield* decodeError(unknownField)).issues?.map((i) => i.path)).toEqual(["extra"])
        const unknownNested = yield* send(
          "/api/posts",
          "POST",
          JSON.stringify({ posts: [{ postId: "p", articleId: "a", kolSerial: "101", color: "red" }] })
        )
        expect(unknownNested.status).toBe(400)
        expect((yield* decodeError(unknownNested)).issues?.map((i) => i.path)).toEqual(["posts.0.color"])

        const badQuery = yield* send("/api/intraday/parallel/execute-multiple?maxConcurrent=abc", "POST", JSON.stringify([{ triggerKey: "a" }]))
        expect(badQuery.status).toBe(400)
        expect((yield* decodeError(badQuery)).message).toContain("maxConcurrent")
        const unknownQuery = yield* send("/api/intraday/parallel/execute-multiple?colour=red", "POST", JSON.stringify([{ triggerKey: "a" }]))
        expect(unknownQuery.status).toBe(400)
        const emptyBatch = yield* send("/api/intraday/parallel/execute-multiple", "POST", "[]")
        expect(emptyBatch.status).toBe(400)
        // None of these ran anything.
        expect((yield* stats).routes.screen.calls).toBe(0)
        expect((yield* raw(`${yield* url}/api/jobs`)).body).toContain(`"total":0`)
        expectNoStackFrames(bodies, 9)
      })
    ))

  it.live("a body over MAX_BODY_BYTES with Content-Length → 413 JSON; one under the limit is read", () =>
    withService(
      Effect.gen(function* () {
        const bodies: Array<string> = []
        const send = sendWith(yield* url, bodies)
        expect(bigBody.length).toBeGreaterThan(2_000)
        const tooLarge = yield* send("/api/posts", "POST", bigBody)
        expect(tooLarge.status).toBe(413)
        expect(tooLarge.headers.get("content-type")).toContain("application/json")
        expect(yield* decodeError(tooLarge)).toMatchObject({ _tag: "PayloadTooLarge", message: expect.stringContaining("2000") })
        const triggers = JSON.stringify(Array.from({ length: 150 }, (_, i) => ({ triggerKey: `k${i}` })))
        expect(triggers.length).toBeGreaterThan(2_000)
        const batch = yield* send("/api/intraday/parallel/execute-multiple", "POST", triggers)
        expect(batch.status).toBe(413)
        const fits = yield* send("/api/posts", "POST", JSON.stringify({ posts: posts("fits", 20) }))
        expect(fits.status, fits.body).toBe(200)
        expect(json(fits)).toEqual({ imported: 20 })
        expect((yield* stats).routes.screen.calls).toBe(0)
        expectNoStackFrames(bodies, 3)
      }),
      { MAX_BODY_BYTES: "2000" }
    ))

  it.live("a chunked body (no Content-Length) over MAX_BODY_BYTES → 413 JSON; a small chunked body is read", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const small = JSON.stringify({ posts: posts("small", 2) })
        const smallChunked = yield* chunkedPost(`${base}/api/posts`, [small.slice(0, 40), small.slice(40)])
        expect(smallChunked.status, smallChunked.body).toBe(200)
        expect(JSON.parse(smallChunked.body)).toEqual({ imported: 2 })

        const chunks = Array.from({ length: Math.ceil(bigBody.length / 500) }, (_, i) => bigBody.slice(i * 500, (i + 1) * 500))
        const chunked = yield* chunkedPost(`${base}/api/posts`, chunks)
        expect(chunked.status, `no response: ${chunked.error ?? ""}`).toBe(413)
        expect(JSON.parse(chunked.body)).toMatchObject({ _tag: "PayloadTooLarge" })
        expect(chunked.body).not.toMatch(stackFrame)
      }),
      { MAX_BODY_BYTES: "2000" }
    ))

  it.live("unknown routes, jobs and posts are JSON 404s; no error body carries a stack trace", () =>
    withService(
      Effect.gen(function* () {
        const bodies: Array<string> = []
        const send = sendWith(yield* url, bodies)
        const noRoute = yield* send("/api/does-not-exist", "GET")
        expect(noRoute.status).toBe(404)
        expect(noRoute.headers.get("content-type")).toContain("application/json")
        expect(yield* decodeError(noRoute)).toMatchObject({ _tag: "NotFound", message: expect.stringContaining("/api/does-not-exist") })
        expect((yield* send("/nothing/here", "POST", "{}")).status).toBe(404)
        expect((yield* send("/api/jobs", "PUT", "{}")).status).toBe(404)
        const noJob = yield* send("/api/jobs/does-not-exist", "GET")
        expect(noJob.status).toBe(404)
        expect(yield* decodeError(noJob)).toMatchObject({ _tag: "NotFound", message: expect.stringContaining("does-not-exist") })
        expect((yield* send("/api/jobs/does-not-exist/events", "GET")).status).toBe(404)
        expect((yield* send("/api/jobs/does-not-exist", "DELETE")).status).toBe(404)
        expect((yield* send("/api/posts/does-not-exist", "GET")).status).toBe(404)
        expectNoStackFrames(bodies, 7)
      })
    ))
})

// ---- 9. auth -------------------------------------------------------------------------------------

describe("API key", () => {
  const apiKey = "test-api-key-7f3a9c"

  it.live("with API_KEY set, /api/* needs Bearer or X-API-Key; health, ready and metrics stay open", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const bodies: Array<string> = []
        const get = (path: string, headers: Record<string, string> = {}) =>
          Effect.tap(raw(`${base}${path}`, { headers }), (r) => Effect.sync(() => bodies.push(r.body)))

        const none = yield* get("/api/jobs")
        expect(none.status).toBe(401)
        expect(none.headers.get("content-type")).toContain("application/json")
        expect(yield* decodeError(none)).toMatchObject({ _tag: "Unauthorized" })
        expect((yield* get("/api/jobs", { authorization: `Bearer ${apiKey}` })).status).toBe(200)
        expect((yield* get("/api/jobs", { "x-api-key": apiKey })).status).toBe(200)
        expect((yield* get("/api/jobs", { authorization: "Bearer wrong-key" })).status).toBe(401)
        expect((yield* get("/api/jobs", { "x-api-key": `${apiKey}x` })).status).toBe(401)
        expect((yield* get("/api/processors")).status).toBe(401)
        expect((yield* get("/api/breakers")).status).toBe(401)
        expect((yield* get("/api/posts/x")).status).toBe(401)
        expect((yield* get("/api/jobs/x/events")).status).toBe(401)

        // An unauthorized batch is not run.
        const batch = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "limit_up" }])
        bodies.push(batch.body)
        expect(batch.status).toBe(401)
        expect((yield* stats).routes.screen.calls).toBe(0)
        const authorized = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "limit_up" }], {
          "x-api-key": apiKey
        })
        bodies.push(authorized.body)
        expect(authorized.status).toBe(200)

        // The typed client with its apiKey option.
        const client = yield* Client.make(base, { apiKey })
        expect((yield* client.jobs.list({ urlParams: { limit: 50, offset: 0 } })).total).toBe(1)
        const anonymous = yield* Client.make(base)
        const denied = yield* anonymous.jobs.list({ urlParams: { limit: 50, offset: 0 } }).pipe(Effect.flip)
        expect(denied._tag).toBe("Unauthorized")

        for (const open of ["/health", "/ready", "/metrics"]) {
          expect((yield* get(open)).status, open).toBe(200)
        }
        for (const body of bodies) expect(body).not.toContain(apiKey)
        expect(bodies.length).toBe(14)
      }),
      { API_KEY: apiKey }
    ))
})

// ---- 10. operations ------------------------------------------------------------------------------

describe("operations", () => {
  it.live("/health, /ready, /metrics (Prometheus, counting attempts), /openapi.json and /docs", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const health = yield* raw(`${base}/health`)
        expect([health.status, json(health)]).toEqual([200, { status: "ok" }])
        const ready = yield* raw(`${base}/ready`)
        expect([ready.status, json(ready)]).toEqual([200, { status: "ready" }])

        const attempts = (text: string) =>
          text
            .split("\n")
            .filter((l) => l.startsWith("pp_attempts_total{") && l.includes("intraday_triggers"))
            .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
        const before = attempts((yield* raw(`${base}/metrics`)).body)
        const batch = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [
          { triggerKey: "m1" },
          { triggerKey: "m2" },
          { triggerKey: "m3" }
        ])
        expect(batch.status).toBe(200)
        const metrics = yield* raw(`${base}/metrics`)
        expect(metrics.status).toBe(200)
        expect(metrics.headers.get("content-type")).toContain("text/plain")
        expect(metrics.body).toContain("pp_attempts_total")
        expect(metrics.body).toMatch(/^# (HELP|TYPE) pp_attempts_total/m)
        expect(attempts(metrics.body) - before).toBe(3)
        // The job's one part ran here; it may still be cleaning up as the answer arrives (1) or not (0).
        expect(metrics.body).toMatch(/^# (HELP|TYPE) pp_job_parts_running/m)
        expect(metrics.body).toMatch(/^pp_job_parts_running(\{[^}]*\})? [01]$/m)

        const openapi = yield* raw(`${base}/openapi.json`)
        expect(openapi.status).toBe(200)
        const spec = json(openapi) as { readonly openapi: string; readonly paths: Record<string, unknown> }
        expect(spec.openapi).toMatch(/^3\./)
        expect(Object.keys(spec.paths)).toEqual(
          expect.arrayContaining([
            "/api/intraday/parallel/execute-multiple",
            "/api/interactions/fetch-all-interactions",
            "/api/post/batch-generate-stream",
            "/api/jobs",
            "/api/jobs/{id}",
            "/api/jobs/{id}/events"
          ])
        )
        const docs = yield* raw(`${base}/docs`)
        expect(docs.status).toBe(200)
        expect(docs.headers.get("content-type")).toContain("text/html")
        expect(docs.body.toLowerCase()).toContain("<html")
      })
    ))
})

// ---- 11. secrets ---------------------------------------------------------------------------------

describe("secrets", () => {
  it.live("logs and responses never contain the LLM key, the news key or KOL passwords", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const service = yield* Service
        const sandbox = yield* Sandbox.Sandbox
        const first = seenBodies.length
        expect(
          (yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", {
            posts: [...posts("sec", 4), { postId: "sec-bad", articleId: "sec-x", kolSerial: "103" }, { postId: "sec-none", articleId: "sec-y", kolSerial: "106" }]
          })).status
        ).toBe(200)
        expect((yield* rawJson(`${base}/api/post/batch-generate-stream`, "POST", { requests: requests("sec", 2) })).status).toBe(200)
        expect((yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "limit_up" }])).status).toBe(200)
        // Failures that get logged: a token revoked mid-way (re-login), a malformed LLM answer.
        yield* sandbox.revokeTokens
        yield* sandbox.setKnobs("chat", { malformedRate: 1 })
        expect((yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: posts("sec2", 2) })).status).toBe(200)
        expect((yield* rawJson(`${base}/api/post/batch-generate-stream`, "POST", { requests: requests("sec2", 1) })).status).toBe(200)
        // A rate-limited news search with Retry-After: 0 is retried at once (debug log per retry).
        yield* sandbox.setKnobs("news", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 0 } })
        const limited = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "gap_up" }])
        expect(errorOf((yield* decodeDetail(limited)).results[0])?.type).toBe("rate_limited")
        yield* rawJson(`${base}/api/processors/interactions`, "PATCH", { maxConcurrent: 4 })

        const logs = service.logs.join("\n")
        expect(service.logs.length).toBeGreaterThanOrEqual(8)
        expect(logs).toContain("job completed")
        expect(logs).toContain("retrying in")
        for (const secret of Object.values(secrets)) {
          expect(logs).not.toContain(secret)
          for (const body of seenBodies.slice(first)) expect(body).not.toContain(secret)
        }
        // The sandbox really was called with the keys (so there was something to leak).
        const s = yield* stats
        expect(s.routes.chat.calls).toBeGreaterThanOrEqual(3)
        expect(s.routes.news.calls).toBe(5)
        expect(s.logins["kol101@example.com"]).toBeGreaterThanOrEqual(1)
      })
    ))
})
