/**
 * The sandbox upstream, exercised over real HTTP with plain `fetch`: the four API contracts, every
 * fault knob, the stats (including client aborts seen on the socket) and the control endpoints.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Data, Duration, Effect, Exit, Fiber, Layer, Option, Schedule, Schema, Scope } from "effect"
import * as SandboxData from "../src/sandbox/data.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"

class FetchFailed extends Data.TaggedError("FetchFailed")<{ readonly cause: unknown }> {}
class NotYet extends Data.TaggedError("NotYet")<{ readonly message: string }> {}

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: unknown
}

/** One HTTP call; interrupting it (e.g. a timeout) aborts the fetch, which closes the socket. */
const call = (url: string, init: RequestInit = {}) =>
  Effect.tryPromise({
    try: async (signal): Promise<Reply> => {
      const response = await fetch(url, { ...init, signal })
      const text = await response.text()
      const body: unknown = text === "" ? undefined : JSON.parse(text)
      return { status: response.status, headers: response.headers, body }
    },
    catch: (cause) => new FetchFailed({ cause })
  })

const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  call(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

const withSandbox = <A, E>(
  f: (sandbox: Sandbox.Sandbox["Type"]) => Effect.Effect<A, E>,
  options: Sandbox.SandboxOptions = {}
) => Effect.flatMap(Sandbox.Sandbox, f).pipe(Effect.provide(Sandbox.layer(options)))

/**
 * The sandbox's stats once `ready` holds, polling every 10 ms for up to 2 s: in-flight and abort
 * counts settle on the socket's 'close', just after the client has its answer.
 */
const statsWhen = (sandbox: Sandbox.Sandbox["Type"], ready: (stats: Sandbox.SandboxStats) => boolean) =>
  Effect.retry(
    Effect.filterOrFail(sandbox.stats, ready, () => new NotYet({ message: "stats not settled" })),
    Schedule.spaced("10 millis").pipe(Schedule.upTo("2 seconds"))
  )

const Interactions = Schema.Struct({
  views: Schema.Int,
  likes: Schema.Int,
  comments: Schema.Int,
  shares: Schema.Int,
  engagementRate: Schema.Number
})
const Token = Schema.Struct({ token: Schema.String, expiresIn: Schema.Number })
const Chat = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Number,
  model: Schema.String,
  choices: Schema.Tuple(
    Schema.Struct({
      index: Schema.Literal(0),
      message: Schema.Struct({ role: Schema.Literal("assistant"), content: Schema.String }),
      finish_reason: Schema.Literal("stop")
    })
  ),
  usage: Schema.Struct({ prompt_tokens: Schema.Int, completion_tokens: Schema.Int, total_tokens: Schema.Int })
})
const Screen = Schema.Struct({
  triggerKey: Schema.String,
  stocks: Schema.Array(
    Schema.Struct({
      code: Schema.String,
      name: Schema.String,
      price: Schema.Number,
      changePercent: Schema.Number,
      volume: Schema.Int
    })
  )
})
const News = Schema.Struct({
  news: Schema.Array(
    Schema.Struct({
      title: Schema.String,
      link: Schema.String,
      snippet: Schema.String,
      date: Schema.String,
      source: Schema.String
    })
  )
})

const login = (url: string, email = "kol@example.com") =>
  postJson(`${url}/auth/login`, { email, password: "secret" }).pipe(
    Effect.flatMap((reply) => Schema.decodeUnknown(Token)(reply.body)),
    Effect.map((body) => body.token)
  )

const interactions = (url: string, articleId: string, token: string) =>
  call(`${url}/articles/${articleId}/interactions`, { headers: { authorization: `Bearer ${token}` } })

describe("sandbox: contracts", () => {
  it.live("forum: login, interactions, bad/revoked/expired tokens, 404, bad bodies", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const token = yield* login(sandbox.url)
        const ok = yield* interactions(sandbox.url, "a1", token)
        expect(ok.status).toBe(200)
        expect(ok.headers.get("content-type")).toBe("application/json")
        const counts = yield* Schema.decodeUnknown(Interactions)(ok.body)
        expect(counts.views).toBeGreaterThanOrEqual(100)
        expect(counts.views).toBeLessThanOrEqual(50_000)
        expect(counts.likes).toBeLessThanOrEqual(counts.views / 5)
        expect(counts.engagementRate).toBeCloseTo((counts.likes + counts.comments + counts.shares) / counts.views, 4)
        // Deterministic per article.
        expect((yield* interactions(sandbox.url, "a1", token)).body).toEqual(ok.body)

        expect((yield* interactions(sandbox.url, "missing-7", token)).status).toBe(404)
        const bad = yield* interactions(sandbox.url, "a1", "nope")
        expect(bad).toMatchObject({ status: 401, body: { error: "invalid or expired token" } })
        expect((yield* call(`${sandbox.url}/articles/a1/interactions`)).status).toBe(401)

        yield* sandbox.revokeTokens
        expect((yield* interactions(sandbox.url, "a1", token)).status).toBe(401)

        yield* sandbox.setKnobs("login", { tokenTtlSeconds: 0 })
        const expired = yield* login(sandbox.url)
        expect((yield* interactions(sandbox.url, "a1", expired)).status).toBe(401)

        const wrong = yield* postJson(`${sandbox.url}/auth/login`, { email: "kol@example.com", password: "wrong" })
        expect(wrong).toMatchObject({ status: 401, body: { error: "invalid credentials" } })
        expect((yield* postJson(`${sandbox.url}/auth/login`, { email: "x" })).status).toBe(400)
        expect((yield* call(`${sandbox.url}/auth/login`, { method: "POST", body: "{not json" })).status).toBe(400)

        const stats = yield* sandbox.stats
        expect(stats.logins).toEqual({ "kol@example.com": 2 })
        expect(stats.routes.login.byId).toEqual({ "kol@example.com": 3 })
        expect(stats.routes.login.calls).toBe(5)
        expect(stats.routes.interactions.byId).toEqual({ a1: 6, "missing-7": 1 })
      })
    )
  )

  it.live("llm: OpenAI-shaped completion that names the stock asked about", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const request = {
          model: "gpt-4o-mini",
          messages: [
            { role: "system", content: "你是一位台股論壇的KOL" },
            { role: "user", content: "幫我寫一篇關於 2330 的短文" }
          ],
          temperature: 0.7
        }
        const reply = yield* postJson(`${sandbox.url}/chat/completions`, request, { authorization: "Bearer sk-test" })
        expect(reply.status).toBe(200)
        const body = yield* Schema.decodeUnknown(Chat)(reply.body)
        const content = body.choices[0].message.content
        expect(content).toContain("2330")
        expect(content).toContain("台積電")
        expect(body.model).toBe("gpt-4o-mini")
        expect(body.usage.completion_tokens).toBe(Math.ceil(content.length / 2))
        expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens)

        const byName = yield* postJson(
          `${sandbox.url}/chat/completions`,
          { model: "m", messages: [{ role: "user", content: "聊聊聯發科" }] },
          { authorization: "Bearer sk-test" }
        ).pipe(Effect.flatMap((r) => Schema.decodeUnknown(Chat)(r.body)))
        expect(byName.choices[0].message.content).toContain("2454")

        expect((yield* postJson(`${sandbox.url}/chat/completions`, request)).status).toBe(401)
        expect((yield* sandbox.stats).routes.chat.byId).toEqual({ "gpt-4o-mini": 2, m: 1 })
      })
    )
  )

  it.live("market: limit respected and capped, limit_up direction, deterministic, invalid limit → 400", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const screen = (path: string) =>
          call(`${sandbox.url}/screens/${path}`).pipe(Effect.flatMap((r) => Schema.decodeUnknown(Screen)(r.body)))
        const up = yield* screen("limit_up?limit=5")
        expect(up.triggerKey).toBe("limit_up")
        expect(up.stocks).toHaveLength(5)
        for (const s of up.stocks) {
          expect(s.changePercent).toBeGreaterThanOrEqual(9.5)
          expect(s.changePercent).toBeLessThanOrEqual(10)
        }
        expect(yield* screen("limit_up?limit=5")).toEqual(up)
        const down = yield* screen("limit_down?limit=8")
        for (const s of down.stocks) expect(s.changePercent).toBeLessThanOrEqual(-9.5)
        expect((yield* screen("volume_surge")).stocks).toHaveLength(10)
        const all = yield* screen("anything?limit=500")
        expect(all.stocks).toHaveLength(50)
        expect(new Set(all.stocks.map((s) => s.code)).size).toBe(50)
        for (const limit of ["0", "-3", "2.5", "abc"]) {
          const reply = yield* call(`${sandbox.url}/screens/limit_up?limit=${limit}`)
          expect(reply.status).toBe(400)
        }
        expect((yield* sandbox.stats).routes.screen.byId).toMatchObject({ limit_up: 6, limit_down: 1 })
      })
    )
  )

  it.live("news: requires X-API-KEY, num respected and capped, items mention the query", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const missing = yield* postJson(`${sandbox.url}/news`, { q: "台積電" })
        expect(missing).toMatchObject({ status: 401, body: { error: "missing api key" } })
        const news = (body: unknown) =>
          postJson(`${sandbox.url}/news`, body, { "x-api-key": "k" }).pipe(
            Effect.flatMap((r) => Schema.decodeUnknown(News)(r.body))
          )
        const three = yield* news({ q: "台積電 法說會", num: 3 })
        expect(three.news).toHaveLength(3)
        for (const item of three.news) {
          expect(item.title).toContain("台積電 法說會")
          expect(item.link.startsWith("https://news.example.com/")).toBe(true)
        }
        expect((yield* news({ q: "鴻海" })).news).toHaveLength(10)
        expect((yield* news({ q: "鴻海", num: 99 })).news).toHaveLength(20)
        expect((yield* postJson(`${sandbox.url}/news`, { num: 2 }, { "x-api-key": "k" })).status).toBe(400)
      })
    )
  )
})

describe("sandbox: faults", () => {
  it.live("errorRate 1 → 503 upstream unavailable, errorStatus overrides the status", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const reply = yield* call(`${sandbox.url}/screens/x`)
          expect(reply).toMatchObject({ status: 503, body: { error: "upstream unavailable" } })
          expect(reply.headers.get("content-type")).toBe("application/json")
          for (const status of [500, 502, 504, 408, 400]) {
            yield* sandbox.setKnobs("screen", { errorStatus: status })
            expect((yield* call(`${sandbox.url}/screens/x`)).status).toBe(status)
          }
        }),
      { knobs: { screen: { errorRate: 1 } } }
    )
  )

  it.live("rateLimitRate 1 → 429 with each Retry-After flavour", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const screen = call(`${sandbox.url}/screens/x`)

          yield* sandbox.setKnobs("screen", { retryAfter: { kind: "seconds", seconds: 2 } })
          const seconds = yield* screen
          expect(seconds.status).toBe(429)
          expect(seconds.headers.get("retry-after")).toBe("2")

          yield* sandbox.setKnobs("screen", { retryAfter: { kind: "http-date", seconds: 5 } })
          const date = (yield* screen).headers.get("retry-after") ?? ""
          const aheadMs = Date.parse(date) - Date.now()
          expect(Number.isNaN(aheadMs)).toBe(false)
          expect(aheadMs).toBeGreaterThan(3_500)
          expect(aheadMs).toBeLessThanOrEqual(6_000)

          yield* sandbox.setKnobs("screen", { retryAfter: { kind: "reset-header", seconds: 3 } })
          const reset = yield* screen
          expect(reset.headers.get("retry-after")).toBeNull()
          expect(reset.headers.get("x-ratelimit-reset-requests")).toBe("3s")

          yield* sandbox.setKnobs("screen", { retryAfter: { kind: "none" } })
          const none = yield* screen
          expect(none.status).toBe(429)
          expect(none.headers.get("retry-after")).toBeNull()
          expect(none.headers.get("x-ratelimit-reset-requests")).toBeNull()
        }),
      { knobs: { screen: { rateLimitRate: 1 } } }
    )
  )

  it.live("malformedRate 1 → 200 with JSON that breaks the schema", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const token = yield* login(sandbox.url)
          const reply = yield* interactions(sandbox.url, "a1", token)
          expect(reply.status).toBe(200)
          expect(reply.body).toEqual({ unexpected: true })
          expect(Schema.is(Interactions)(reply.body)).toBe(false)
        }),
      { knobs: { interactions: { malformedRate: 1 } } }
    )
  )

  it.live("dropRate 1 → the connection is reset and fetch rejects; the server keeps serving", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const failed = yield* Effect.flip(call(`${sandbox.url}/screens/x`))
          expect(failed._tag).toBe("FetchFailed")
          yield* sandbox.setKnobs("screen", { dropRate: 0 })
          expect((yield* call(`${sandbox.url}/screens/x`)).status).toBe(200)
          const stats = yield* statsWhen(sandbox, (s) => s.routes.screen.inFlight === 0)
          // A drop is the server's doing, not a client abort.
          expect(stats.routes.screen).toMatchObject({ calls: 2, aborted: 0 })
        }),
      { knobs: { screen: { dropRate: 1 } } }
    )
  )

  it.live("hangRate 1 + client timeout → counted as aborted, in-flight back to 0", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const outcome = yield* call(`${sandbox.url}/screens/x`).pipe(Effect.timeoutOption("50 millis"))
          expect(Option.isNone(outcome)).toBe(true)
          const stats = yield* statsWhen(
            sandbox,
            (s) => s.routes.screen.aborted === 1 && s.routes.screen.inFlight === 0
          )
          expect(stats.routes.screen).toMatchObject({ calls: 1, aborted: 1, inFlight: 0, peakInFlight: 1 })
        }),
      { knobs: { screen: { hangRate: 1 } } }
    )
  )

  it.live("latency: 5 concurrent requests with 50 ms fixed latency → peakInFlight 5", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const started = Date.now()
          const replies = yield* Effect.forEach(
            ["a", "b", "c", "d", "e"],
            (key) => call(`${sandbox.url}/screens/${key}?limit=1`),
            { concurrency: "unbounded" }
          )
          expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200])
          expect(Date.now() - started).toBeGreaterThanOrEqual(45)
          const stats = yield* statsWhen(sandbox, (s) => s.routes.screen.inFlight === 0)
          expect(stats.routes.screen).toMatchObject({ calls: 5, peakInFlight: 5, aborted: 0 })
          expect(stats.totalPeakInFlight).toBe(5)
          expect(stats.routes.screen.byId).toEqual({ a: 1, b: 1, c: 1, d: 1, e: 1 })

          yield* sandbox.reset
          const after = yield* sandbox.stats
          expect(after.routes.screen).toEqual({
            calls: 0,
            inFlight: 0,
            peakInFlight: 0,
            aborted: 0,
            rejectedOverCapacity: 0,
            byId: {}
          })
          expect(after.totalPeakInFlight).toBe(0)
        }),
      { knobs: { screen: { latency: { kind: "fixed", ms: 50 } } } }
    )
  )

  it.live("lognormal latency with a tail delays every answer by its draw, never fails them", () => {
    const latency = { kind: "lognormal", medianMs: 120, sigma: 0.5, tailProbability: 0.2, tailMs: 400 } as const
    const n = 30
    // With every fault rate at 0 the only draws from the sandbox's seeded PRNG are the latencies, so
    // the delays these n calls get are the first n draws, whichever call arrives first.
    const rng = SandboxData.mulberry32(7)
    const drawn = Array.from({ length: n }, () => SandboxData.lognormalMs(rng, latency)).sort((a, b) => a - b)
    return withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          // The knob is the distribution it says: median near 120 ms, some 400 ms tails, some fast.
          const median = drawn[Math.floor(n / 2)] ?? Number.NaN
          expect(median).toBeGreaterThan(80)
          expect(median).toBeLessThan(200)
          expect(drawn.filter((ms) => ms === 400).length).toBeGreaterThanOrEqual(3)

          const timed = yield* Effect.forEach(
            Array.from({ length: n }, (_, i) => i),
            (i) => Effect.timed(call(`${sandbox.url}/screens/k${i}?limit=1`)),
            { concurrency: "unbounded" }
          )
          expect(timed.map(([, reply]) => reply.status)).toEqual(Array.from({ length: n }, () => 200))
          const took = timed.map(([duration]) => Duration.toMillis(duration)).sort((a, b) => a - b)
          // Sorted against sorted: the i-th fastest answer took at least the i-th smallest delay (no
          // answer comes before its delay; 2 ms for timer rounding), and not more than 2 s over it
          // (a loaded 2-core CI machine answering 30 sockets at once).
          took.forEach((ms, i) => {
            const delay = drawn[i] ?? Number.NaN
            expect(ms, `answer ${i}`).toBeGreaterThanOrEqual(delay - 2)
            expect(ms, `answer ${i}`).toBeLessThan(delay + 2_000)
          })
          expect(took[Math.floor(n / 2)]).toBeGreaterThanOrEqual(median - 2)
          expect(took[n - 1]).toBeGreaterThanOrEqual(398)
        }),
      { seed: 7, knobs: { screen: { latency } } }
    )
  })
})

describe("sandbox: capacity", () => {
  // Latency-based cases rely on all calls of a burst reaching the server before the first one's
  // latency is over: the latencies are a few hundred ms so that holds on a loaded CI machine too.

  /** `n` calls to the screen route started together, each with how long it took, fastest first. */
  const together = (url: string, n: number) =>
    Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) => Effect.timed(call(`${url}/screens/k${i}?limit=1`)),
      { concurrency: "unbounded" }
    ).pipe(
      Effect.map((timed) =>
        timed.map(([duration, reply]) => ({ ms: Duration.toMillis(duration), reply })).sort((a, b) => a.ms - b.ms)
      )
    )

  const statuses = (url: string, n: number) =>
    Effect.map(together(url, n), (replies) => replies.map((r) => r.reply.status).sort())

  /**
   * One call first, then zeroed stats: the very first requests to a fresh server are slow enough
   * under load to spread a burst over more than a latency.
   */
  const warmUp = (sandbox: Sandbox.Sandbox["Type"]) =>
    call(`${sandbox.url}/__stats`).pipe(Effect.zipRight(sandbox.reset))

  const settled = (sandbox: Sandbox.Sandbox["Type"]) => statsWhen(sandbox, (s) => s.routes.screen.inFlight === 0)

  const put = (url: string, path: string, body: unknown) =>
    call(`${url}${path}`, { method: "PUT", body: JSON.stringify(body) })

  it.live("capacity 2, overCapacity 429: of 5 calls at once 2 are served, 3 get 429 at once with Retry-After", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          yield* warmUp(sandbox)
          const replies = yield* together(sandbox.url, 5)
          // Fastest first: turned away at once, the three 429s come back before either served call.
          expect(replies.map((r) => r.reply.status)).toEqual([429, 429, 429, 200, 200])
          for (const { reply } of replies.slice(0, 3)) {
            expect(reply.headers.get("retry-after")).toBe("3")
            expect(reply.body).toEqual({ error: "over capacity" })
          }
          for (const { ms } of replies.slice(3)) expect(ms).toBeGreaterThanOrEqual(390)
          const stats = yield* settled(sandbox)
          expect(stats.routes.screen).toMatchObject({
            calls: 5,
            rejectedOverCapacity: 3,
            peakInFlight: 2,
            inFlight: 0,
            aborted: 0
          })
          expect(stats.totalPeakInFlight).toBe(2)
          const overHttp = yield* call(`${sandbox.url}/__stats`)
          expect(overHttp.body).toMatchObject({ routes: { screen: { rejectedOverCapacity: 3, peakInFlight: 2 } } })
        }),
      {
        knobs: {
          screen: { latency: { kind: "fixed", ms: 400 }, capacity: 2, retryAfter: { kind: "seconds", seconds: 3 } }
        }
      }
    )
  )

  it.live("overCapacity 503: a hanging call holds the slot (503 + retryAfter headers) until its client aborts", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          const hanging = yield* Effect.fork(call(`${sandbox.url}/screens/x`))
          yield* statsWhen(sandbox, (s) => s.routes.screen.inFlight === 1)
          for (const key of ["y", "z"]) {
            const reply = yield* call(`${sandbox.url}/screens/${key}`)
            expect(reply).toMatchObject({ status: 503, body: { error: "over capacity" } })
            expect(reply.headers.get("x-ratelimit-reset-requests")).toBe("2s")
            expect(reply.headers.get("retry-after")).toBeNull()
          }
          // Interrupting the fetch aborts it, which closes the socket and frees the slot.
          yield* Fiber.interrupt(hanging)
          yield* statsWhen(sandbox, (s) => s.routes.screen.aborted === 1 && s.routes.screen.inFlight === 0)
          yield* sandbox.setKnobs("screen", { hangRate: 0 })
          expect((yield* call(`${sandbox.url}/screens/w`)).status).toBe(200)
          const stats = yield* settled(sandbox)
          expect(stats.routes.screen).toMatchObject({ calls: 4, aborted: 1, rejectedOverCapacity: 2, peakInFlight: 1 })
        }),
      {
        knobs: {
          screen: { hangRate: 1, capacity: 1, overCapacity: "503", retryAfter: { kind: "reset-header", seconds: 2 } }
        }
      }
    )
  )

  it.live("overCapacity queue + kneeFactor 1: never rejects, latency × max(1, inFlight / capacity)", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          yield* warmUp(sandbox)
          const replies = yield* together(sandbox.url, 4)
          expect(replies.map((r) => r.reply.status)).toEqual([200, 200, 200, 200])
          // All four were in flight at once, so they were admitted with 1, 2, 3 and 4 in flight on a
          // capacity of 2: 200, 200, 300 and 400 ms.
          const stats = yield* settled(sandbox)
          expect(stats.routes.screen).toMatchObject({ calls: 4, rejectedOverCapacity: 0, peakInFlight: 4 })
          const [first, second, third, fourth] = replies.map((r) => r.ms)
          expect(first).toBeGreaterThanOrEqual(190)
          expect(second).toBeGreaterThanOrEqual(190)
          expect(third).toBeGreaterThanOrEqual(285)
          expect(fourth).toBeGreaterThanOrEqual(380)
          expect(fourth).toBeLessThan(2_000)
        }),
      {
        knobs: {
          screen: { latency: { kind: "fixed", ms: 200 }, capacity: 2, overCapacity: "queue", kneeFactor: 1 }
        }
      }
    )
  )

  it.live("capacity changes at run time through PUT /__knobs and setKnobs; null removes the limit", () =>
    withSandbox(
      (sandbox) =>
        Effect.gen(function* () {
          yield* warmUp(sandbox)
          const limited = yield* put(sandbox.url, "/__knobs/screen", { capacity: 1 })
          expect(limited.status).toBe(200)
          expect(limited.body).toMatchObject({ capacity: 1, latency: { kind: "fixed", ms: 250 } })
          expect(yield* statuses(sandbox.url, 3)).toEqual([200, 429, 429])
          yield* settled(sandbox)

          const raised = yield* put(sandbox.url, "/__knobs", { screen: { capacity: 2, overCapacity: "503" } })
          expect(raised.body).toMatchObject({ screen: { capacity: 2, overCapacity: "503" } })
          expect(yield* statuses(sandbox.url, 3)).toEqual([200, 200, 503])
          yield* settled(sandbox)

          const unlimited = yield* put(sandbox.url, "/__knobs/screen", { capacity: null })
          const withoutCapacity = { ...Sandbox.healthyKnobs, latency: { kind: "fixed", ms: 250 }, overCapacity: "503" }
          expect(unlimited).toMatchObject({ status: 200 })
          expect(unlimited.body).toEqual(withoutCapacity)
          const knobs = yield* call(`${sandbox.url}/__knobs`)
          expect(knobs.body).toEqual(expect.objectContaining({ screen: withoutCapacity }))
          expect(yield* statuses(sandbox.url, 3)).toEqual([200, 200, 200])
          yield* settled(sandbox)

          yield* sandbox.setKnobs("screen", { capacity: 1, overCapacity: "429" })
          expect(yield* statuses(sandbox.url, 2)).toEqual([200, 429])

          const stats = yield* settled(sandbox)
          expect(stats.routes.screen).toMatchObject({ calls: 11, rejectedOverCapacity: 4, peakInFlight: 3 })
        }),
      { knobs: { screen: { latency: { kind: "fixed", ms: 250 } } } }
    )
  )

  it.live("invalid capacity knobs → 400 naming the field, knobs unchanged", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const rejected = (path: string, body: unknown, field: string) =>
          Effect.gen(function* () {
            const reply = yield* put(sandbox.url, path, body)
            expect(reply).toMatchObject({ status: 400, body: { error: expect.stringContaining(`${field}:`) } })
          })
        yield* rejected("/__knobs/screen", { capacity: -1 }, "capacity")
        yield* rejected("/__knobs/screen", { capacity: 0 }, "capacity")
        yield* rejected("/__knobs/screen", { capacity: 1.5 }, "capacity")
        yield* rejected("/__knobs/screen", { capacity: "2" }, "capacity")
        yield* rejected("/__knobs/screen", { overCapacity: "x" }, "overCapacity")
        yield* rejected("/__knobs/screen", { overCapacity: 429 }, "overCapacity")
        yield* rejected("/__knobs/screen", { kneeFactor: -0.5 }, "kneeFactor")
        yield* rejected("/__knobs", { screen: { capacity: -1 } }, "screen.capacity")
        const knobs = yield* call(`${sandbox.url}/__knobs`)
        expect(knobs.body).toEqual(Object.fromEntries(Sandbox.routeNames.map((route) => [route, Sandbox.healthyKnobs])))
      })
    )
  )
})

describe("sandbox: control", () => {
  it.live("HTTP control endpoints: knobs, stats, reset, revoke-tokens", () =>
    withSandbox((sandbox) =>
      Effect.gen(function* () {
        const put = (path: string, body: unknown) =>
          call(`${sandbox.url}${path}`, { method: "PUT", body: JSON.stringify(body) })

        const merged = yield* put("/__knobs/news", { errorRate: 1, errorStatus: 502 })
        expect(merged.status).toBe(200)
        expect(merged.body).toMatchObject({ errorRate: 1, errorStatus: 502, rateLimitRate: 0 })
        expect((yield* postJson(`${sandbox.url}/news`, { q: "x" }, { "x-api-key": "k" })).status).toBe(502)

        expect((yield* put("/__knobs/news", { errorRate: 2 })).status).toBe(400)
        expect((yield* put("/__knobs/nope", { errorRate: 1 })).status).toBe(404)

        const several = yield* put("/__knobs", { news: { errorRate: 0 }, screen: { malformedRate: 1 } })
        expect(several.status).toBe(200)
        expect((yield* call(`${sandbox.url}/screens/x`)).body).toEqual({ unexpected: true })
        expect((yield* postJson(`${sandbox.url}/news`, { q: "x" }, { "x-api-key": "k" })).status).toBe(200)

        const token = yield* login(sandbox.url)
        expect((yield* call(`${sandbox.url}/__revoke-tokens`, { method: "POST" })).status).toBe(200)
        expect((yield* interactions(sandbox.url, "a1", token)).status).toBe(401)

        const stats = yield* call(`${sandbox.url}/__stats`)
        expect(stats.body).toMatchObject({
          routes: { news: { calls: 2, byId: { x: 2 } }, screen: { calls: 1 }, interactions: { calls: 1 } },
          logins: { "kol@example.com": 1 }
        })
        expect((yield* call(`${sandbox.url}/__reset`, { method: "POST" })).status).toBe(200)
        const reset = yield* sandbox.stats
        expect(reset.routes.news.calls).toBe(0)
        expect(reset.logins).toEqual({})
        // Reset leaves knobs alone.
        expect((yield* call(`${sandbox.url}/screens/x`)).body).toEqual({ unexpected: true })
        expect((yield* call(`${sandbox.url}/nowhere`))).toMatchObject({ status: 404, body: { error: "not found" } })
      })
    )
  )

  it.live("closing the layer releases hanging requests instead of waiting for them", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Sandbox.layer({ knobs: { news: { hangRate: 1 } } }), scope)
      const sandbox = Context.get(context, Sandbox.Sandbox)
      const pending = yield* Effect.fork(postJson(`${sandbox.url}/news`, { q: "x" }, { "x-api-key": "k" }))
      yield* statsWhen(sandbox, (s) => s.routes.news.inFlight === 1)
      // Without dropping the open connections, server.close() would wait for the hang forever.
      yield* Scope.close(scope, Exit.void).pipe(
        Effect.timeoutFail({ duration: Duration.seconds(2), onTimeout: () => "closing the sandbox hung" })
      )
      const result = yield* Fiber.join(pending).pipe(Effect.either)
      expect(result._tag).toBe("Left")
    })
  )
})
