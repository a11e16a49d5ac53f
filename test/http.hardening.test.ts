/**
 * Hostile and odd input at the HTTP front door (issue 11), against the real service on 127.0.0.1:
 * deeply nested JSON, bodies that are not JSON, unknown and non-decimal query parameters, a `null`
 * body, numeric `kolSerial`s, bodies trickled in slowly, and the paging of `GET /api/jobs` and of a
 * job's results. Every case is a clear 4xx naming what is wrong, never a 5xx or a stack trace.
 */
import { type HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import * as net from "node:net"
import { JobCursorFromString, JobPage, JobWithResults, ResultsPage } from "../src/http/Api.js"
import * as Client from "../src/http/Client.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { json, raw, rawJson, Service, serviceLayer, waitForJob, type RawResponse } from "./support/http.js"

type Env = Readonly<Record<string, string>>

const withService = <A, E>(self: Effect.Effect<A, E, Service | Sandbox.Sandbox | HttpClient.HttpClient>, env: Env = {}) =>
  Effect.provide(self, serviceLayer({ env }))

const url = Effect.map(Service, (s) => s.url)

const ErrorBody = Schema.Struct({
  _tag: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })))
})
const decodeError = (r: RawResponse) => Schema.decodeUnknown(ErrorBody)(json(r))

const stackFrame = /\n\s+at |\bat [^\s]+ \(.*:\d+:\d+\)|node_modules|Maximum call stack/

/** Status and error body of a client error: a 4xx with a JSON `{ _tag, message }`, no stack trace. */
const expectClientError = (r: RawResponse, status: number, tag: string, message: RegExp) =>
  Effect.gen(function* () {
    expect(r.status, r.body.slice(0, 300)).toBe(status)
    expect(r.body).not.toMatch(stackFrame)
    const error = yield* decodeError(r)
    expect(error._tag).toBe(tag)
    expect(error.message).toMatch(message)
    return error
  })

/** Every route that takes a body, with a body it accepts. */
const bodyRoutes: ReadonlyArray<{ readonly method: string; readonly path: string; readonly body: unknown }> = [
  { method: "POST", path: "/api/interactions/fetch-all-interactions", body: { posts: [{ postId: "p", articleId: "a", kolSerial: "101" }] } },
  { method: "POST", path: "/api/post/batch-generate-stream", body: { requests: [{ kolSerial: "101", stockCode: "2330" }] } },
  { method: "POST", path: "/api/intraday/parallel/execute-multiple", body: [{ triggerKey: "limit_up" }] },
  { method: "POST", path: "/api/posts", body: { posts: [{ postId: "p", articleId: "a", kolSerial: "101" }] } },
  { method: "PATCH", path: "/api/processors/interactions", body: { maxConcurrent: 4 } },
  { method: "PATCH", path: "/api/upstreams/forum", body: { ceiling: 6 } }
]

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

const stats = Effect.flatMap(Sandbox.Sandbox, (s) => s.stats)

const jobTotal = (base: string) => Effect.map(raw(`${base}/api/jobs`), (r) => (json(r) as { total: number }).total)

// ---- deep nesting --------------------------------------------------------------------------------

describe("deeply nested JSON", () => {
  it.live("3,000 levels on every body route → 400 naming the nesting; nothing runs; shallow free-form params still pass", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        for (const route of bodyRoutes) {
          for (const body of [nested(3_000), `{"posts":${nested(3_000)}}`, `[{"triggerKey":"a","params":{"x":${nested(3_000)}}}]`]) {
            const r = yield* raw(`${base}${route.path}`, { method: route.method, headers: { "content-type": "application/json" }, body })
            const error = yield* expectClientError(r, 400, "BadRequest", /^body: JSON nested deeper than 64 levels/)
            expect(error.issues).toEqual([{ path: "body", message: "nested deeper than 64 levels" }])
          }
        }
        expect(yield* jobTotal(base)).toBe(0)
        // Brackets inside strings are not nesting; a few real levels in `params` are fine.
        const ok = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [
          { triggerKey: "limit_up", params: { a: { b: { c: [[["x"]]] } }, text: nested(500) } }
        ])
        expect(ok.status, ok.body).toBe(200)
        expect((yield* raw(`${base}/health`)).status).toBe(200)
      })
    ))
})

// ---- content types -------------------------------------------------------------------------------

describe("bodies that are not JSON", () => {
  it.live("multipart, form, text or bytes on every body route → 415 naming application/json; nothing runs", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const types = [
          "multipart/form-data",
          "multipart/form-data; boundary=----x",
          "text/plain",
          "application/x-www-form-urlencoded",
          "application/octet-stream",
          "application/jsonp",
          "text/json"
        ]
        for (const route of bodyRoutes) {
          for (const type of types) {
            const r = yield* raw(`${base}${route.path}`, {
              method: route.method,
              headers: { "content-type": type },
              body: JSON.stringify(route.body)
            })
            const error = yield* expectClientError(r, 415, "UnsupportedMediaType", /application\/json/)
            expect(error.message).toContain(type)
          }
        }
        // A real multipart body (FormData) too.
        const form = new FormData()
        form.append("posts", JSON.stringify([{ postId: "p", articleId: "a", kolSerial: "101" }]))
        yield* expectClientError(yield* raw(`${base}/api/posts`, { method: "POST", body: form }), 415, "UnsupportedMediaType", /application\/json/)
        expect(yield* jobTotal(base)).toBe(0)
        expect((yield* stats).routes.screen.calls).toBe(0)

        // JSON with parameters, in any case, is JSON.
        const withCharset = yield* raw(`${base}/api/posts`, {
          method: "POST",
          headers: { "content-type": "Application/JSON; charset=utf-8" },
          body: JSON.stringify(bodyRoutes[3]?.body)
        })
        expect(withCharset.status, withCharset.body).toBe(200)
        // No content type at all is read as JSON (curl -XPOST without -H, the fetch-all "no body" call).
        const none = yield* raw(`${base}/api/interactions/fetch-all-interactions`, { method: "POST" })
        expect(none.status, none.body).toBe(200)
      })
    ))
})

// ---- query strings, null, kolSerial -------------------------------------------------------------

describe("query strings", () => {
  it.live("an unknown parameter (also __proto__) → 400 naming it, on every route; a repeated one → 400", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const submitted = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: "a" }])
        expect(submitted.status).toBe(200)
        const id = (json(submitted) as { id: string }).id
        const routes: ReadonlyArray<readonly [string, string, unknown?]> = [
          ["GET", "/health"],
          ["GET", "/ready"],
          ["GET", "/metrics"],
          ["GET", "/api/jobs"],
          ["GET", `/api/jobs/${id}`],
          ["GET", `/api/jobs/${id}/results`],
          ["GET", `/api/jobs/${id}/events`],
          ["DELETE", `/api/jobs/${id}`],
          ["GET", "/api/posts/p1"],
          ["GET", "/api/processors"],
          ["GET", "/api/breakers"],
          ["GET", "/api/upstreams"],
          ["GET", "/api/upstreams/history"],
          ["GET", "/api/instances"],
          ...bodyRoutes.map((r) => [r.method, r.path, r.body] as const)
        ]
        for (const [method, path, body] of routes) {
          for (const param of ["__proto__", "constructor", "colour"]) {
            const r = yield* raw(`${base}${path}?${param}=1`, {
              method,
              ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
            })
            const error = yield* expectClientError(r, 400, "BadRequest", new RegExp(`query parameter "${param}" is not accepted`))
            expect(error.issues?.map((i) => i.path)).toEqual([param])
          }
        }
        const twice = yield* raw(`${base}/api/jobs?limit=1&limit=2`)
        yield* expectClientError(twice, 400, "BadRequest", /^limit: given more than once/)
        // None of the POSTs above ran: the only job is the first one.
        expect(yield* jobTotal(base)).toBe(1)
      })
    ))

  it.live("integers are decimal: 0x10, 1e1, ' 16', '' and 16.0 → 400 naming the parameter; 16 is 16", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const triggers = JSON.stringify([{ triggerKey: "a" }])
        const post = (query: string) =>
          raw(`${base}/api/intraday/parallel/execute-multiple?${query}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: triggers
          })
        for (const value of ["0x10", "1e1", "%2016", "", "16.0", "+16", "0b1"]) {
          yield* expectClientError(yield* post(`maxConcurrent=${value}`), 400, "BadRequest", /^maxConcurrent: Expected a decimal integer/)
        }
        for (const value of ["0x10", "1e1", ""]) {
          yield* expectClientError(yield* post(`timeoutSeconds=${value}`), 400, "BadRequest", /^timeoutSeconds: Expected a decimal number/)
          yield* expectClientError(yield* raw(`${base}/api/jobs?limit=${value}`), 400, "BadRequest", /^limit: Expected a decimal integer/)
          yield* expectClientError(yield* raw(`${base}/api/jobs?offset=${value}`), 400, "BadRequest", /^offset: Expected a decimal integer/)
        }
        expect(yield* jobTotal(base)).toBe(0)
        const ok = yield* post("maxConcurrent=16&timeoutSeconds=2.5")
        expect(ok.status, ok.body).toBe(200)
        expect((json(ok) as { options: unknown }).options).toEqual({ maxConcurrent: 16, timeoutSeconds: 2.5 })
      })
    ))
})

describe("bodies: null and numeric kolSerial", () => {
  it.live("a JSON null body → 400 on every body route (the interactions route does not run every tracked post)", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const imported = yield* rawJson(`${base}/api/posts`, "POST", { posts: [{ postId: "n1", articleId: "a1", kolSerial: "101" }] })
        expect(imported.status).toBe(200)
        for (const route of bodyRoutes) {
          for (const body of ["null", " null\n"]) {
            const r = yield* raw(`${base}${route.path}`, { method: route.method, headers: { "content-type": "application/json" }, body })
            const error = yield* expectClientError(r, 400, "BadRequest", /^body: null is not a request body/)
            expect(error.issues?.map((i) => i.path)).toEqual(["body"])
          }
        }
        expect(yield* jobTotal(base)).toBe(0)
        expect((yield* stats).routes.interactions.calls).toBe(0)
        // No body at all still means "every tracked post".
        const all = yield* raw(`${base}/api/interactions/fetch-all-interactions`, { method: "POST" })
        expect(all.status, all.body).toBe(200)
        expect(json(all)).toMatchObject({ total: 1, succeeded: 1 })
      })
    ))

  it.live("kolSerial as a number is accepted and stored as its string; fractions and negatives are 400s", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const imported = yield* rawJson(`${base}/api/posts`, "POST", { posts: [{ postId: "k1", articleId: "a1", kolSerial: 101 }] })
        expect(imported.status, imported.body).toBe(200)
        expect(json(yield* raw(`${base}/api/posts/k1`))).toMatchObject({ postId: "k1", kolSerial: "101" })

        const fetched = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", {
          posts: [{ postId: "k2", articleId: "a2", kolSerial: 102 }]
        })
        expect(fetched.status, fetched.body).toBe(200)
        expect(json(fetched)).toMatchObject({ succeeded: 1 })
        expect(json(yield* raw(`${base}/api/posts/k2`))).toMatchObject({ kolSerial: "102" })

        const generated = yield* raw(`${base}/api/post/batch-generate-stream`, {
          method: "POST",
          headers: { "content-type": "application/json", prefer: "respond-async" },
          body: JSON.stringify({ requests: [{ kolSerial: 101, stockCode: "2330" }] })
        })
        expect(generated.status, generated.body).toBe(202)

        for (const serial of [1.5, -1, true, null]) {
          const bad = yield* rawJson(`${base}/api/posts`, "POST", { posts: [{ postId: "k3", articleId: "a3", kolSerial: serial }] })
          const error = yield* expectClientError(bad, 400, "BadRequest", /posts\.0\.kolSerial/)
          expect(error.issues?.map((i) => i.path)).toEqual(["posts.0.kolSerial"])
        }
      })
    ))
})

// ---- slow bodies ---------------------------------------------------------------------------------

/**
 * Opens a raw connection, sends the request head, then one byte of body every `everyMs` (never all
 * of it). Resolves with what the server sent and when the connection ended, or after `giveUpMs`.
 */
const trickle = (base: string, head: string, everyMs: number, giveUpMs: number) =>
  Effect.async<{ readonly received: string; readonly closedAfterMs: number | undefined }>((resume) => {
    const { hostname, port } = new URL(base)
    const started = performance.now()
    let received = ""
    const socket = net.connect(Number(port), hostname)
    const finish = (closed: boolean) => {
      clearInterval(drip)
      clearTimeout(giveUp)
      socket.destroy()
      resume(Effect.succeed({ received, closedAfterMs: closed ? performance.now() - started : undefined }))
    }
    const drip = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write(" ")
    }, everyMs)
    const giveUp = setTimeout(() => finish(false), giveUpMs)
    socket.on("connect", () => socket.write(head))
    socket.on("data", (chunk) => {
      received += chunk.toString("utf8")
    })
    socket.on("error", () => {})
    socket.on("close", () => finish(true))
    return Effect.sync(() => finish(false))
  })

describe("request timeout", () => {
  it.live("a body trickled in slowly gets 408 and the connection closed within REQUEST_BODY_TIMEOUT; others are served", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const head = "POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        const slow = yield* Effect.fork(trickle(base, head, 100, 8_000))
        // Headers trickled in never complete either.
        const slowHeaders = yield* Effect.fork(trickle(base, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", 100, 8_000))
        // Meanwhile the service answers everyone else at once.
        const health = yield* raw(`${base}/health`)
        expect(health.status).toBe(200)
        for (const fiber of [slow, slowHeaders]) {
          const result = yield* Fiber.join(fiber)
          expect(result.closedAfterMs, "the connection was still open after 8 s").toBeDefined()
          expect(result.closedAfterMs ?? 0).toBeGreaterThanOrEqual(900)
          expect(result.closedAfterMs ?? 0).toBeLessThan(3_000)
          expect(result.received).toMatch(/^HTTP\/1\.1 408 /)
        }
        expect((yield* raw(`${base}/health`)).status).toBe(200)
      }),
      { REQUEST_BODY_TIMEOUT: "1 second" }
    ))

  it.live("a slow but steady upload within the timeout is read", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const body = JSON.stringify({ posts: [{ postId: "slow", articleId: "a", kolSerial: "101" }] })
        const sent = yield* Effect.async<{ readonly status: string }>((resume) => {
          const { hostname, port } = new URL(base)
          const socket = net.connect(Number(port), hostname)
          let received = ""
          socket.on("connect", () => {
            socket.write(`POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
            let at = 0
            const drip = setInterval(() => {
              socket.write(body.slice(at, at + 10))
              at += 10
              if (at >= body.length) clearInterval(drip)
            }, 20)
          })
          socket.on("data", (chunk) => {
            received += chunk.toString("utf8")
          })
          socket.on("error", () => {})
          socket.on("close", () => resume(Effect.succeed({ status: received.split("\r\n")[0] ?? "" })))
          return Effect.sync(() => void socket.destroy())
        }).pipe(Effect.timeout(Duration.seconds(5)))
        expect(sent.status).toBe("HTTP/1.1 200 OK")
      }),
      { REQUEST_BODY_TIMEOUT: "2 seconds" }
    ))
})

// ---- GET /api/jobs paging ------------------------------------------------------------------------

const decodePage = Schema.decodeUnknown(JobPage)

describe("GET /api/jobs paging", () => {
  it.live("cursor paging: no duplicates and no gaps while jobs are created concurrently", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const submit = (i: number) =>
          Effect.flatMap(
            raw(`${base}/api/intraday/parallel/execute-multiple`, {
              method: "POST",
              headers: { "content-type": "application/json", prefer: "respond-async" },
              body: JSON.stringify([{ triggerKey: `k${i}` }])
            }),
            (r) => (r.status === 202 ? Effect.succeed((json(r) as { id: string }).id) : Effect.dieMessage(r.body))
          )
        const before = yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), submit, { concurrency: 5 })

        // Jobs keep arriving while the client pages, 5 per page.
        const creating = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 40 }, (_, i) => 100 + i), (i) => Effect.zipRight(submit(i), Effect.sleep("5 millis")))
        )
        const seen: Array<string> = []
        let cursor: string | undefined
        let pages = 0
        do {
          const page = yield* decodePage(
            json(yield* raw(`${base}/api/jobs?kind=intraday-triggers&limit=5${cursor === undefined ? "" : `&cursor=${cursor}`}`))
          )
          expect(page.jobs.length).toBeLessThanOrEqual(5)
          seen.push(...page.jobs.map((j) => j.id))
          cursor = page.next
          pages++
          yield* Effect.sleep("10 millis")
        } while (cursor !== undefined && pages < 100)
        yield* Fiber.join(creating)

        expect(new Set(seen).size, "a job was listed twice").toBe(seen.length)
        // Every job that existed when paging began is on exactly one page.
        expect(before.filter((id) => !seen.includes(id))).toEqual([])
        // Pages are newest first: createdAt never increases along the walk.
        const all = yield* decodePage(json(yield* raw(`${base}/api/jobs?limit=200`)))
        expect(all.total).toBe(70)
        const order = all.jobs.map((j) => j.id)
        const positions = seen.map((id) => order.indexOf(id))
        expect(positions).toEqual([...positions].sort((a, b) => a - b))
      })
    ))

  it.live("next, cursor with filters, the typed client, and 400s for a bad cursor or cursor+offset", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const client = yield* Client.make(base)
        for (let i = 0; i < 5; i++) {
          expect((yield* rawJson(`${base}/api/intraday/parallel/execute-multiple`, "POST", [{ triggerKey: `t${i}` }])).status).toBe(200)
        }
        const first = yield* client.jobs.list({ urlParams: { limit: 2 } })
        expect(first).toMatchObject({ total: 5, limit: 2, offset: 0 })
        expect(first.next).toBeDefined()
        // The typed client takes the cursor decoded (`JobCursorFromString`) and encodes it again.
        const cursor = yield* Schema.decode(JobCursorFromString)(first.next ?? "")
        const second = yield* client.jobs.list({ urlParams: { limit: 2, cursor } })
        expect(second.offset).toBeUndefined()
        const third = yield* decodePage(json(yield* raw(`${base}/api/jobs?limit=2&cursor=${second.next ?? ""}`)))
        expect(third.jobs).toHaveLength(1)
        expect(third.next).toBeUndefined()
        const ids = [...first.jobs, ...second.jobs, ...third.jobs].map((j) => j.id)
        const everything = yield* client.jobs.list({ urlParams: {} })
        expect(ids).toEqual(everything.jobs.map((j) => j.id))
        expect(everything.next).toBeUndefined()
        // Exactly a page full: no `next` pointing at an empty page.
        expect((yield* client.jobs.list({ urlParams: { limit: 5 } })).next).toBeUndefined()

        yield* expectClientError(yield* raw(`${base}/api/jobs?cursor=nope`), 400, "BadRequest", /^cursor: /)
        yield* expectClientError(yield* raw(`${base}/api/jobs?cursor=${first.next ?? ""}&offset=2`), 400, "BadRequest", /offset: cannot be combined with cursor/)
        // Offset paging still works for old clients.
        const byOffset = yield* decodePage(json(yield* raw(`${base}/api/jobs?limit=2&offset=2`)))
        expect(byOffset.jobs.map((j) => j.id)).toEqual(ids.slice(2, 4))
        expect(byOffset.offset).toBe(2)
      })
    ))
})

// ---- a job's results -----------------------------------------------------------------------------

const decodeJob = Schema.decodeUnknown(JobWithResults)
const decodeResults = Schema.decodeUnknown(ResultsPage)

describe("a big job's results", () => {
  it.live("GET /api/jobs/{id} holds at most 1000 results and links the rest; /results pages by index; the sync answer keeps all", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        // Items of a skipped KOL finish at once without a call: a big job in a few hundred ms.
        const n = 1_250
        const items = Array.from({ length: n }, (_, i) => ({ postId: `p${i}`, articleId: `a${i}`, kolSerial: "999" }))
        const sync = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", { posts: items, maxConcurrent: 64 })
        expect(sync.status).toBe(200)
        const done = json(sync) as { id: string; results: ReadonlyArray<{ index: number }> }
        // The synchronous answer is the whole job, as documented.
        expect(done.results.map((r) => r.index)).toEqual(items.map((_, i) => i))

        const full = yield* raw(`${base}/api/jobs/${done.id}`)
        const job = yield* decodeJob(json(full))
        expect(job.results.map((r) => r.index)).toEqual(items.slice(0, 1_000).map((_, i) => i))
        expect(job.moreResults).toBe(`/api/jobs/${done.id}/results?after=999`)
        expect(full.body.length).toBeLessThan(sync.body.length)

        const small = yield* raw(`${base}/api/jobs/${done.id}?results=0`)
        expect(small.body.length).toBeLessThan(1_000)
        expect(yield* decodeJob(json(small))).toMatchObject({ total: n, completed: n, results: [], moreResults: `/api/jobs/${done.id}/results` })
        const ten = yield* decodeJob(json(yield* raw(`${base}/api/jobs/${done.id}?results=10`)))
        expect(ten.results.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        expect(ten.moreResults).toBe(`/api/jobs/${done.id}/results?after=9`)

        // The rest, following `next`, 300 at a time: every index once, in order.
        const rest = yield* decodeResults(json(yield* raw(`${base}${job.moreResults ?? ""}`)))
        expect(rest.results.map((r) => r.index)).toEqual(Array.from({ length: 100 }, (_, i) => 1_000 + i))
        const indexes: Array<number> = []
        let after: number | undefined
        for (;;) {
          const page = yield* decodeResults(
            json(yield* raw(`${base}/api/jobs/${done.id}/results?limit=300${after === undefined ? "" : `&after=${after}`}`))
          )
          expect(page).toMatchObject({ jobId: done.id, status: "completed", total: n, completed: n })
          indexes.push(...page.results.map((r) => r.index))
          if (page.next === undefined) break
          after = page.next
        }
        expect(indexes).toEqual(items.map((_, i) => i))

        // The typed client has the route.
        const client = yield* Client.make(base)
        const last = yield* client.jobs.results({ path: { id: done.id }, urlParams: { after: 1_240, limit: 1_000 } })
        expect(last.results.map((r) => r.index)).toEqual([1_241, 1_242, 1_243, 1_244, 1_245, 1_246, 1_247, 1_248, 1_249])
        expect(last.next).toBeUndefined()

        for (const query of ["limit=0", "limit=1001", "limit=0x10", "after=-1", "after=abc", "page=2"]) {
          const bad = yield* raw(`${base}/api/jobs/${done.id}/results?${query}`)
          expect(bad.status, query).toBe(400)
        }
        for (const query of ["results=1001", "results=-1", "results=all"]) {
          expect((yield* raw(`${base}/api/jobs/${done.id}?${query}`)).status, query).toBe(400)
        }
        yield* expectClientError(yield* raw(`${base}/api/jobs/nope/results`), 404, "NotFound", /nope/)
      }),
      { INTERACTIONS_SKIP_KOLS: "999" }
    ), 30_000)

  it.live("a running job's results page shows what is finished so far", () =>
    withService(
      Effect.gen(function* () {
        const base = yield* url
        const sandbox = yield* Sandbox.Sandbox
        yield* sandbox.setKnobs("screen", { latency: { kind: "fixed", ms: 400 } })
        const accepted = yield* raw(`${base}/api/intraday/parallel/execute-multiple?maxConcurrent=2`, {
          method: "POST",
          headers: { "content-type": "application/json", prefer: "respond-async" },
          body: JSON.stringify([{ triggerKey: "a" }, { triggerKey: "b" }, { triggerKey: "c" }, { triggerKey: "d" }])
        })
        const id = (json(accepted) as { id: string }).id
        yield* waitForJob(base, id, (j) => j.completed >= 2)
        const partial = yield* decodeResults(json(yield* raw(`${base}/api/jobs/${id}/results`)))
        expect(partial.status).toBe("running")
        expect(partial.results.length).toBeGreaterThanOrEqual(2)
        expect(partial.results.length).toBeLessThan(4)
        yield* waitForJob(base, id, (j) => j.status === "completed")
        const final = yield* decodeResults(json(yield* raw(`${base}/api/jobs/${id}/results`)))
        expect(final.results.map((r) => r.index)).toEqual([0, 1, 2, 3])
      })
    ))
})
