/**
 * The sandbox upstream: one real HTTP server on 127.0.0.1 that plays the four APIs the virtual-KOL
 * platform calls (forum login + article interactions, an OpenAI-compatible LLM, a market screener,
 * a Serper-style news search), with per-route fault knobs — latency, injected errors, 429s with
 * each Retry-After flavour, hangs, malformed bodies and dropped connections, and a capacity with
 * what happens above it (429, 503 or a latency knee) — and live stats (calls, in-flight, peak
 * in-flight, client aborts, over-capacity rejections) for demos, integration tests and benchmarks.
 *
 * In flight means being served: a call holds a slot from the moment it is admitted until Node
 * closes its response (sent, or the client went away), whatever the faults then do with it — a
 * hang holds its slot until the client gives up. A call turned away by `capacity` is answered at
 * once and never holds a slot, so it counts in `calls` and `rejectedOverCapacity` but neither in
 * `inFlight` nor in `peakInFlight` / `totalPeakInFlight`.
 *
 * Control it over HTTP (`/__knobs`, `/__stats`, `/__reset`, `/__revoke-tokens`) or, in the same
 * process, through the `Sandbox` service.
 *
 * The knobs are in `Knobs.ts`, the stats in `Stats.ts`, what the APIs read and write in `Wire.ts`,
 * the generated data in `data.ts`. Over 300 lines because `make` is one closure (~350 lines) on
 * purpose: every route draws from the instance's one PRNG — the draw order is what makes a run
 * reproducible from its seed — and shares its knobs, counters and tokens.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import { Clock, Context, Duration, Effect, Either, HashMap, Layer, Option, ParseResult, Ref, Schema, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import { createServer, type ServerResponse } from "node:http"
import * as Data from "./data.js"
import {
  applyPatches,
  defaultTokenTtlSeconds,
  healthyKnobs,
  kneeMultiplier,
  KnobsPatch,
  KnobsPatches,
  overCapacity,
  perRoute,
  RouteNameSchema,
  routeNames,
  type Latency,
  type RouteKnobs,
  type RouteKnobsPatch,
  type RouteName
} from "./Knobs.js"
import { emptyCounters, increment, resetCounters, snapshot, type Counters, type RouteCounters, type SandboxStats } from "./Stats.js"
import { badRequest, bearer, ChatBody, errorJson, json, LoginBody, NewsBody, rateLimitHeaders } from "./Wire.js"

export {
  healthyKnobs,
  routeNames,
  type Latency,
  type OverCapacity,
  type RetryAfter,
  type RouteKnobs,
  type RouteKnobsPatch,
  type RouteName
} from "./Knobs.js"
export type { RouteStats, SandboxStats } from "./Stats.js"

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

export interface SandboxOptions {
  /** Default "127.0.0.1". */
  readonly host?: string
  /** Default 0: the OS picks a free port; read the real one from `Sandbox.url`. */
  readonly port?: number
  /** Seeds the fault decisions and the generated data. Default 42. */
  readonly seed?: number
  readonly knobs?: KnobsPatches
}

export class Sandbox extends Context.Tag("parallel-processor/Sandbox")<
  Sandbox,
  {
    /** e.g. "http://127.0.0.1:54321" */
    readonly url: string
    readonly stats: Effect.Effect<SandboxStats>
    readonly setKnobs: (route: RouteName, knobs: RouteKnobsPatch) => Effect.Effect<void>
    /** Resets stats, not knobs. */
    readonly reset: Effect.Effect<void>
    /** Forgets every issued token, so the next interactions call gets 401. */
    readonly revokeTokens: Effect.Effect<void>
  }
>() {}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

const make = (options: SandboxOptions): Effect.Effect<Context.Tag.Service<Sandbox>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const seed = options.seed ?? 42
    const sandboxScope = yield* Effect.scope

    // One PRNG per instance for every fault decision and latency draw, so a run is reproducible
    // from its seed (given the same request order).
    const rng = Data.mulberry32(seed)
    const random = Effect.sync(rng)
    const roll = (rate: number): Effect.Effect<boolean> =>
      rate <= 0 ? Effect.succeed(false) : rate >= 1 ? Effect.succeed(true) : Effect.map(random, (r) => r < rate)

    const sampleLatency = (latency: Latency): Effect.Effect<number> =>
      latency.kind === "fixed" ? Effect.succeed(latency.ms) : Effect.sync(() => Data.lognormalMs(rng, latency))

    const knobs = yield* Ref.make(applyPatches(perRoute(() => healthyKnobs), options.knobs))
    const counters = yield* Ref.make(emptyCounters)
    /** Issued token → expiry (epoch ms). */
    const tokens = yield* Ref.make(HashMap.empty<string, number>())

    const setKnobs = (route: RouteName, patch: RouteKnobsPatch) =>
      Ref.update(knobs, (all) => applyPatches(all, { [route]: patch }))

    // --- stats bookkeeping -------------------------------------------------------------------

    /**
     * Counts the call and, in the same atomic step, decides whether it gets a slot: the capacity
     * check and the in-flight increment are one `Ref.modify`, so concurrent arrivals can never
     * both take the last slot. An admitted call learns how many calls are in flight with it.
     */
    const admit = (route: RouteName, id: Option.Option<string>, k: RouteKnobs) =>
      Ref.modify(counters, (c): readonly [Option.Option<number>, Counters] => {
        const r = c.routes[route]
        const counted: RouteCounters = {
          ...r,
          calls: r.calls + 1,
          byId: Option.match(id, { onNone: () => r.byId, onSome: (key) => increment(r.byId, key) })
        }
        if (overCapacity(k, r.inFlight)) {
          const rejected = { ...counted, rejectedOverCapacity: r.rejectedOverCapacity + 1 }
          return [Option.none(), { ...c, routes: { ...c.routes, [route]: rejected } }]
        }
        const inFlight = r.inFlight + 1
        const totalInFlight = c.totalInFlight + 1
        const admitted = { ...counted, inFlight, peakInFlight: Math.max(r.peakInFlight, inFlight) }
        return [
          Option.some(inFlight),
          {
            ...c,
            routes: { ...c.routes, [route]: admitted },
            totalInFlight,
            totalPeakInFlight: Math.max(c.totalPeakInFlight, totalInFlight)
          }
        ]
      })

    const end = (route: RouteName, aborted: boolean) =>
      Ref.update(counters, (c) => {
        const r = c.routes[route]
        return {
          ...c,
          routes: { ...c.routes, [route]: { ...r, inFlight: r.inFlight - 1, aborted: r.aborted + (aborted ? 1 : 0) } },
          totalInFlight: c.totalInFlight - 1
        }
      })

    /**
     * Resolves when Node closes the response — after it was fully sent, or because the connection
     * went away first — with whether the response had been ended by then. This is the raw
     * ServerResponse 'close', the same event NodeHttpServer uses to interrupt the handler, so an
     * abort is counted even while the handler is still sleeping or hanging.
     */
    const responseClosed = (response: ServerResponse) =>
      Effect.async<{ readonly answered: boolean }>((resume) => {
        if (response.socket === null || response.socket.destroyed) {
          resume(Effect.succeed({ answered: response.writableEnded }))
          return
        }
        const onClose = () => resume(Effect.succeed({ answered: response.writableEnded }))
        response.once("close", onClose)
        return Effect.sync(() => void response.off("close", onClose))
      })

    // --- the fault pipeline --------------------------------------------------------------------

    /**
     * Every upstream route goes through here: count the call and admit it or turn it away
     * (capacity), sleep the latency (times the knee), then decide in order hang → drop → error →
     * rate-limit → malformed, and only then run the real `answer`.
     */
    const simulate = <R>(
      route: RouteName,
      id: Option.Option<string>,
      answer: Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>
    ) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const response = NodeHttpServerRequest.toServerResponse(request)
        const dropped = yield* Ref.make(false)
        const k = (yield* Ref.get(knobs))[route]
        const release = responseClosed(response).pipe(
          Effect.flatMap(({ answered }) =>
            Effect.flatMap(Ref.get(dropped), (wasDropped) => end(route, !answered && !wasDropped))
          )
        )
        // Taking the slot and arming its release are one uninterruptible step: a client abort in
        // between would otherwise leak the slot. The release is forked into the sandbox scope (not
        // the request's): it must outlive the handler, which returns before Node has flushed the
        // response, and must stop when the sandbox stops.
        const admitted = yield* Effect.uninterruptibleMask((restore) =>
          Effect.tap(admit(route, id, k), (slot) =>
            Option.isSome(slot) ? Effect.forkIn(restore(release), sandboxScope) : Effect.void
          )
        )
        if (Option.isNone(admitted)) {
          const now = yield* Clock.currentTimeMillis
          const status = k.overCapacity === "503" ? 503 : 429
          return json({ error: "over capacity" }, status, rateLimitHeaders(k.retryAfter, now))
        }

        const delayMs = (yield* sampleLatency(k.latency)) * kneeMultiplier(k, admitted.value)
        if (delayMs > 0) yield* Effect.sleep(Duration.millis(delayMs))

        if (yield* roll(k.hangRate)) {
          // NodeHttpServer interrupts this fiber when the client closes the connection.
          return yield* Effect.never
        }
        if (yield* roll(k.dropRate)) {
          yield* Ref.set(dropped, true)
          yield* Effect.sync(() => NodeHttpServerRequest.toIncomingMessage(request).socket.destroy())
          // The socket's 'close' interrupts this fiber; there is nothing left to answer.
          return yield* Effect.never
        }
        if (yield* roll(k.errorRate)) return errorJson(k.errorStatus ?? 503, "upstream unavailable")
        if (yield* roll(k.rateLimitRate)) {
          const now = yield* Clock.currentTimeMillis
          return json({ error: "rate limited" }, 429, rateLimitHeaders(k.retryAfter, now))
        }
        if (yield* roll(k.malformedRate)) return json({ unexpected: true })
        return yield* answer
      })

    /** The request body as JSON decoded with `schema`; any read or parse problem is a Left message. */
    const decodeBody = <A, I>(
      schema: Schema.Schema<A, I>
    ): Effect.Effect<Either.Either<A, string>, never, HttpServerRequest.HttpServerRequest> =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        request.text.pipe(
          Effect.map((text) =>
            Either.mapLeft(Schema.decodeUnknownEither(Schema.parseJson(schema))(text), (error) =>
              // One line per problem ("rateLimitRate: Expected a number between 0 and 1, …"); the
              // tree format repeats the whole schema, which drowns the actual complaint.
              ParseResult.ArrayFormatter.formatErrorSync(error)
                .map((issue) => (issue.path.length === 0 ? issue.message : `${issue.path.join(".")}: ${issue.message}`))
                .join("; ")
            )
          ),
          Effect.orElseSucceed(() => Either.left("unreadable request body"))
        )
      )

    const header = (name: string) => Effect.map(HttpServerRequest.HttpServerRequest, (request) => request.headers[name])

    const pathParam = (name: string) => Effect.map(HttpRouter.params, (params) => Option.fromNullable(params[name]))

    // --- forum ---------------------------------------------------------------------------------

    const login = Effect.gen(function* () {
      const body = yield* decodeBody(LoginBody)
      const id = Either.match(body, { onLeft: () => Option.none<string>(), onRight: (b) => Option.some(b.email) })
      return yield* simulate(
        "login",
        id,
        Either.match(body, {
          onLeft: (error) => Effect.succeed(badRequest(error)),
          onRight: ({ email, password }) =>
            email === "" || password === "" || password === "wrong"
              ? Effect.succeed(errorJson(401, "invalid credentials"))
              : Effect.gen(function* () {
                  const ttlSeconds = (yield* Ref.get(knobs)).login.tokenTtlSeconds ?? defaultTokenTtlSeconds
                  const now = yield* Clock.currentTimeMillis
                  const token: string = yield* Effect.sync(() => randomUUID())
                  yield* Ref.update(tokens, HashMap.set(token, now + ttlSeconds * 1000))
                  yield* Ref.update(counters, (c) => ({ ...c, logins: increment(c.logins, email) }))
                  return json({ token, expiresIn: ttlSeconds })
                })
        })
      )
    })

    const tokenIsValid = (token: Option.Option<string>) =>
      Effect.gen(function* () {
        if (Option.isNone(token)) return false
        const expiry = HashMap.get(yield* Ref.get(tokens), token.value)
        const now = yield* Clock.currentTimeMillis
        return Option.exists(expiry, (at) => at > now)
      })

    const articleInteractions = Effect.gen(function* () {
      const articleId = Option.getOrElse(yield* pathParam("articleId"), () => "")
      const token = bearer(yield* header("authorization"))
      return yield* simulate(
        "interactions",
        Option.some(articleId),
        Effect.gen(function* () {
          if (!(yield* tokenIsValid(token))) return errorJson(401, "invalid or expired token")
          if (articleId.startsWith("missing")) return errorJson(404, "article not found")
          return json(Data.interactions(articleId, seed))
        })
      )
    })

    // --- llm -----------------------------------------------------------------------------------

    const chat = Effect.gen(function* () {
      const body = yield* decodeBody(ChatBody)
      const apiKey = bearer(yield* header("authorization"))
      const id = Either.match(body, { onLeft: () => Option.none<string>(), onRight: (b) => Option.some(b.model) })
      return yield* simulate(
        "chat",
        id,
        Effect.gen(function* () {
          if (Option.isNone(apiKey)) return errorJson(401, "missing api key")
          if (Either.isLeft(body)) return badRequest(body.left)
          const { model, messages } = body.right
          const lastUser = [...messages].reverse().find((m) => m.role === "user") ?? messages[messages.length - 1]
          const content = Data.forumPost(lastUser?.content ?? "", seed)
          const promptTokens = Data.tokenCount(messages.map((m) => m.content).join(""))
          const completionTokens = Data.tokenCount(content)
          const now = yield* Clock.currentTimeMillis
          const completionId = yield* Effect.sync(() => randomUUID())
          return json({
            id: `chatcmpl-${completionId}`,
            object: "chat.completion",
            created: Math.floor(now / 1000),
            model,
            choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
            usage: {
              prompt_tokens: promptTokens,
              completion_tokens: completionTokens,
              total_tokens: promptTokens + completionTokens
            }
          })
        })
      )
    })

    // --- market --------------------------------------------------------------------------------

    const marketScreen = Effect.gen(function* () {
      const triggerKey = Option.getOrElse(yield* pathParam("triggerKey"), () => "")
      const query = yield* HttpServerRequest.ParsedSearchParams
      const rawLimit = query["limit"]
      // Decided before the faults but answered after them, like every other validation here.
      const limit: Either.Either<number, string> =
        rawLimit === undefined
          ? Either.right(10)
          : typeof rawLimit === "string" && /^[1-9]\d*$/.test(rawLimit)
            ? Either.right(Math.min(Number(rawLimit), 50))
            : Either.left("limit must be a positive integer")
      return yield* simulate(
        "screen",
        Option.some(triggerKey),
        Effect.succeed(
          Either.match(limit, {
            onLeft: badRequest,
            onRight: (n) => json({ triggerKey, stocks: Data.screen(triggerKey, n, seed) })
          })
        )
      )
    })

    // --- news ----------------------------------------------------------------------------------

    const newsSearch = Effect.gen(function* () {
      const body = yield* decodeBody(NewsBody)
      const apiKey = yield* header("x-api-key")
      const id = Either.match(body, { onLeft: () => Option.none<string>(), onRight: (b) => Option.some(b.q) })
      return yield* simulate(
        "news",
        id,
        Effect.succeed(
          apiKey === undefined || apiKey === ""
            ? errorJson(401, "missing api key")
            : Either.match(body, {
                onLeft: badRequest,
                onRight: ({ q, num }) => json({ news: Data.news(q, Math.min(num ?? 10, 20), seed) })
              })
        )
      )
    })

    // --- control -------------------------------------------------------------------------------

    const stats = Effect.map(Ref.get(counters), snapshot)
    const reset = Ref.update(counters, resetCounters)
    const revokeTokens = Ref.set(tokens, HashMap.empty())

    const putRouteKnobs = Effect.gen(function* () {
      const route = Schema.decodeUnknownEither(RouteNameSchema)(Option.getOrUndefined(yield* pathParam("route")))
      if (Either.isLeft(route)) return errorJson(404, `unknown route; expected one of ${routeNames.join(", ")}`)
      const patch = yield* decodeBody(KnobsPatch)
      if (Either.isLeft(patch)) return badRequest(patch.left)
      yield* setKnobs(route.right, patch.right)
      yield* Effect.logDebug("sandbox knobs changed").pipe(Effect.annotateLogs({ route: route.right }))
      return json((yield* Ref.get(knobs))[route.right])
    })

    const putAllKnobs = Effect.gen(function* () {
      const patches = yield* decodeBody(KnobsPatches)
      if (Either.isLeft(patches)) return badRequest(patches.left)
      yield* Ref.update(knobs, (all) => applyPatches(all, patches.right))
      yield* Effect.logDebug("sandbox knobs changed")
      return json(yield* Ref.get(knobs))
    })

    const router = HttpRouter.empty.pipe(
      HttpRouter.post("/auth/login", login),
      HttpRouter.get("/articles/:articleId/interactions", articleInteractions),
      HttpRouter.post("/chat/completions", chat),
      HttpRouter.get("/screens/:triggerKey", marketScreen),
      HttpRouter.post("/news", newsSearch),
      HttpRouter.get("/__stats", Effect.map(stats, (s) => json(s))),
      HttpRouter.get("/__knobs", Effect.map(Ref.get(knobs), (k) => json(k))),
      HttpRouter.put("/__knobs/:route", putRouteKnobs),
      HttpRouter.put("/__knobs", putAllKnobs),
      HttpRouter.post("/__reset", Effect.as(reset, json({ ok: true }))),
      HttpRouter.post("/__revoke-tokens", Effect.as(revokeTokens, json({ ok: true })))
    )
    // The router's own 404 has no body; keep "every response is JSON" true for unknown paths too.
    const app = Effect.catchTag(router, "RouteNotFound", () => Effect.succeed(errorJson(404, "not found")))

    const nodeServer = yield* Effect.sync(() => createServer())
    const server = yield* NodeHttpServer.make(() => nodeServer, { host, port: options.port ?? 0 }).pipe(Effect.orDie)
    // Runs before NodeHttpServer's own `server.close()` (finalizers run in reverse), which would
    // otherwise wait forever for hanging requests and idle keep-alive sockets.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* server.serve(app)

    const address = server.address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("sandbox: expected a TCP address")
    const hostname = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
    const url = `http://${hostname}:${address.port}`
    yield* Effect.logDebug("sandbox listening").pipe(Effect.annotateLogs({ url, seed }))

    return { url, stats, setKnobs, reset, revokeTokens }
  })

/** Starts the sandbox in the layer's scope; closing the scope drops every connection and stops it. */
export const layer = (options: SandboxOptions = {}): Layer.Layer<Sandbox> => Layer.scoped(Sandbox, make(options))
