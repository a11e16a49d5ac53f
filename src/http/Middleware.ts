/**
 * What every request goes through before and after its handler: the body size limit (a real 413,
 * checked before reading), JSON error bodies for malformed JSON, schema failures (every issue, with
 * its field path), unknown routes and unexpected failures — never a stack trace — API-key auth for
 * `/api/*` when `API_KEY` is set, and the per-route request guard (unknown query parameters, a body
 * that is not JSON, JSON nested too deep, a `null` body).
 */
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiError,
  HttpIncomingMessage,
  HttpRouter,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Cause, Config, Effect, Layer, Option, Redacted, SchemaAST } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import * as EventLoop from "./EventLoop.js"
import { Api, Authorization, BadRequest, Overloaded, RequestGuard, Unauthorized, UnsupportedMediaType } from "./Api.js"

const jsonError = (status: number, error: string, message: string, extra: object = {}, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson({ _tag: error, message, ...extra }, { status, headers })

const pathOf = (path: ReadonlyArray<PropertyKey>) => (path.length === 0 ? "body" : path.map(String).join("."))

/** Chunked bodies are read up to this multiple of the limit before the connection is dropped. */
const CHUNKED_HARD_CAP = 4

const tooLarge = (limit: number) =>
  HttpServerResponse.unsafeJson(
    { _tag: "PayloadTooLarge", message: `request body exceeds MAX_BODY_BYTES (${limit} bytes)` },
    // The rest of an oversized body is not read; closing the connection keeps it from being parsed as a request.
    { status: 413, headers: { connection: "close" } }
  )

export const maxBodyBytes = Config.integer("MAX_BODY_BYTES").pipe(
  Config.validate({ message: "must be a positive number of bytes", validation: (n) => n > 0 }),
  Config.withDefault(1024 * 1024)
)

/**
 * An issue's message quotes the value it rejected ("…, actual <value>"): a 900 KB string would come
 * back whole, and a body with 10,000 bad items would list 10,000 issues. Both are cut here.
 */
const MAX_MESSAGE_CHARS = 300
const MAX_ISSUES = 50

const clip = (message: string) => (message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message)

/**
 * One entry per field: a union's alternatives and an optional field's "undefined" branch each add an
 * issue of their own, which would bury the one that matters.
 */
const issuesOf = (raw: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>) => {
  const byPath = new Map<string, Array<string>>()
  for (const issue of raw) {
    if (issue.path.length === 0 && issue.message.startsWith("Expected null")) continue
    const path = pathOf(issue.path)
    const messages = byPath.get(path) ?? []
    if (!messages.includes(issue.message)) messages.push(issue.message)
    byPath.set(path, messages)
  }
  return Array.from(byPath, ([path, messages]) => {
    const useful = messages.length > 1 ? messages.filter((m) => !m.startsWith("Expected undefined")) : messages
    const literals = useful.map((m) => /^Expected (".*"), actual (.*)$/.exec(m))
    const message = literals.length > 1 && literals.every((m) => m !== null)
      ? `Expected one of ${literals.map((m) => m?.[1]).join(", ")}, actual ${literals[0]?.[2] ?? ""}`
      : useful.join("; ")
    return { path: clip(path), message: clip(message) }
  })
}

const describeIssues = (issues: ReadonlyArray<{ readonly path: string; readonly message: string }>) => {
  const shown = issues.slice(0, MAX_ISSUES)
  const more = issues.length - shown.length
  const message = shown.map((i) => `${i.path}: ${i.message}`).join("; ") + (more > 0 ? `; and ${more} more issue(s)` : "")
  return { message: message === "" ? "invalid request" : message, issues: shown }
}

/** Global middleware of the HttpApi router (also wraps its not-found fallback). */
export const hardening = HttpApiBuilder.middleware(
  Api,
  Effect.map(maxBodyBytes, (limit) => (app) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const declared = Number(request.headers["content-length"] ?? 0)
      if (declared > limit) return tooLarge(limit)
      if (request.headers["content-length"] === undefined && request.headers["transfer-encoding"] !== undefined) {
        // A chunked body's size is known only by reading it. Node's body limit destroys the socket,
        // which loses the 413; so read up to a hard cap (the text is cached for the handler) and
        // answer 413 ourselves. Only a body beyond the hard cap gets the connection dropped.
        const body = yield* request.text.pipe(
          HttpIncomingMessage.withMaxBodySize(Option.some(limit * CHUNKED_HARD_CAP)),
          Effect.option
        )
        if (Option.isNone(body) || Buffer.byteLength(body.value, "utf8") > limit) return tooLarge(limit)
      }
      // Writes (a batch: parsing, storing and starting a job) queue with job work; reads — `/health`,
      // a job's status, metrics — stay ahead of both, so a burst of batches cannot hide the service's state.
      return yield* request.method === "GET" ? app : Effect.locally(app, EventLoop.interactive, false)
    }).pipe(
      Effect.catchAllCause((cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          const error: unknown = failure.value
          if (error instanceof HttpServerError.RouteNotFound) {
            return Effect.succeed(jsonError(404, "NotFound", `no route for ${error.request.method} ${error.request.url}`))
          }
          if (error instanceof Overloaded) {
            // HttpApi's error responses carry no headers; a refused batch must say when to come back.
            const seconds = error.retryAfterSeconds
            return Effect.succeed(
              jsonError(503, error._tag, error.message, { retryAfterSeconds: seconds }, { "retry-after": String(seconds) })
            )
          }
          if (error instanceof HttpApiError.HttpApiDecodeError) {
            const { message, issues } = describeIssues(issuesOf(error.issues))
            return Effect.succeed(jsonError(400, "BadRequest", message, { issues }))
          }
          return Effect.failCause(cause)
        }
        const defect = Cause.dieOption(cause)
        if (Option.isSome(defect) && defect.value instanceof HttpServerError.RequestError) {
          // HttpApi reads the body with `orDie`, so body problems arrive as defects.
          return Effect.succeed(
            String(defect.value.cause).includes("maxBytes exceeded")
              ? tooLarge(limit)
              : jsonError(400, "BadRequest", "malformed JSON body")
          )
        }
        return Effect.logError("unhandled request failure", Cause.pretty(cause)).pipe(
          Effect.as(jsonError(500, "InternalError", "internal server error"))
        )
      })
    )
  ),
  { withContext: false }
)

// ---- request guard -------------------------------------------------------------------------------

/**
 * Bodies nested deeper are refused before decoding. A schema error quotes the rejected value, and
 * formatting it recurses once per level: 3,000 levels overflowed the stack (a 500). No request of
 * this API needs more than a few levels; 64 leaves room for intraday triggers' free-form `params`.
 */
export const MAX_JSON_DEPTH = 64

/** Whether JSON text nests arrays/objects deeper than `max` (a scan, not a parse: no recursion). */
export const nestsDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > max) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/** The only body type the API reads; the platform would hand others to the schema as text or bytes. */
const isJson = (contentType: string) => contentType.split(";")[0]?.trim().toLowerCase() === "application/json"

interface RouteSpec {
  readonly body: boolean
  readonly query: ReadonlyArray<string>
}

/** Per route of the contract (`GET /api/jobs/:id`, …): whether it takes a body, which query parameters. */
const routeSpecs = (() => {
  const specs = new Map<string, RouteSpec>()
  HttpApi.reflect(Api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      specs.set(`${endpoint.method} ${endpoint.path}`, {
        body: Option.isSome(endpoint.payloadSchema),
        query: Option.match(endpoint.urlParamsSchema, {
          onNone: () => [],
          onSome: (schema) => SchemaAST.getPropertySignatures(schema.ast).map((p) => String(p.name))
        })
      })
    }
  })
  return specs
})()

const queryOf = (url: string) => {
  const at = url.indexOf("?")
  return new URLSearchParams(at < 0 ? "" : url.slice(at + 1))
}

/**
 * The contract's `RequestGuard`, run after the route is matched (and after auth) but before its
 * query and body are decoded:
 * - a query parameter the route does not take is a 400 naming it. The platform's own decoding
 *   ignored them on routes without query parameters, and lost `__proto__` on every route;
 * - a body route with a Content-Type other than JSON is a 415. The platform would parse form data
 *   and multipart itself (a malformed multipart body was a 500) or hand text and bytes to the schema;
 * - JSON nested deeper than `MAX_JSON_DEPTH` is a 400 (see there), and so is a `null` body, which
 *   the platform cannot tell from no body at all (the interactions route would run every post).
 * The body is read here once and cached by the request, so the handler does not read it again.
 */
export const requestGuard = Layer.succeed(
  RequestGuard,
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { route } = yield* HttpRouter.RouteContext
    const spec = routeSpecs.get(`${route.method} ${String(route.path)}`)
    if (spec === undefined) return
    const seen = new Set<string>()
    for (const key of queryOf(request.url).keys()) {
      if (!spec.query.includes(key)) {
        const accepted = spec.query.length === 0 ? "this route takes none" : `accepted: ${spec.query.join(", ")}`
        const name = clip(JSON.stringify(key))
        return yield* new BadRequest({
          message: `query parameter ${name} is not accepted (${accepted})`,
          issues: [{ path: clip(key), message: `unknown query parameter; ${accepted}` }]
        })
      }
      if (seen.has(key)) {
        return yield* new BadRequest({ message: `${key}: given more than once`, issues: [{ path: key, message: "given more than once" }] })
      }
      seen.add(key)
    }
    if (!spec.body) return
    const contentType = request.headers["content-type"]
    if (contentType !== undefined && !isJson(contentType)) {
      return yield* new UnsupportedMediaType({
        message: `content-type: expected application/json, got ${clip(JSON.stringify(contentType))}`
      })
    }
    // A body that cannot be read (cut off, too large) fails again where the route reads it, and is
    // answered there (`hardening`).
    const text = yield* Effect.option(request.text)
    if (Option.isNone(text)) return
    if (nestsDeeperThan(text.value, MAX_JSON_DEPTH)) {
      return yield* new BadRequest({
        message: `body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
        issues: [{ path: "body", message: `nested deeper than ${MAX_JSON_DEPTH} levels` }]
      })
    }
    if (text.value.trim() === "null") {
      return yield* new BadRequest({
        message: "body: null is not a request body; send a JSON object or array (or no body where the route allows it)",
        issues: [{ path: "body", message: "Expected a JSON object or array, actual null" }]
      })
    }
  })
)

// ---- auth ----------------------------------------------------------------------------------------

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()

/** `API_KEY` unset: `/api/*` is open. Set: Bearer token or `X-API-Key` must match (constant time). */
export const authorization = Layer.effect(
  Authorization,
  Effect.gen(function* () {
    const key = yield* Config.option(Config.redacted("API_KEY"))
    const expected = Option.map(
      Option.filter(key, (k) => Redacted.value(k).length > 0),
      (k) => digest(Redacted.value(k))
    )
    const verify = (presented: Redacted.Redacted<string>) =>
      Option.match(expected, {
        onNone: () => Effect.void,
        onSome: (want) =>
          timingSafeEqual(digest(Redacted.value(presented)), want)
            ? Effect.void
            : Effect.fail(new Unauthorized({ message: "missing or invalid API key (Authorization: Bearer … or X-API-Key)" }))
      })
    return { bearer: verify, apiKey: verify }
  })
)
