/**
 * What every request goes through before and after its handler: the body size limit (a real 413,
 * checked before reading), JSON error bodies for malformed JSON, schema failures (every issue, with
 * its field path), unknown routes and unexpected failures — never a stack trace — and API-key auth
 * for `/api/*` when `API_KEY` is set.
 */
import { HttpApiBuilder, HttpApiError, HttpIncomingMessage, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Config, Effect, Layer, Option, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { Api, Authorization, Unauthorized } from "./Api.js"

const jsonError = (status: number, error: string, message: string, extra: object = {}) =>
  HttpServerResponse.unsafeJson({ _tag: error, message, ...extra }, { status })

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
    return { path, message }
  })
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
      return yield* app
    }).pipe(
      Effect.catchAllCause((cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          const error: unknown = failure.value
          if (error instanceof HttpServerError.RouteNotFound) {
            return Effect.succeed(jsonError(404, "NotFound", `no route for ${error.request.method} ${error.request.url}`))
          }
          if (error instanceof HttpApiError.HttpApiDecodeError) {
            const issues = issuesOf(error.issues)
            const message = issues.length === 0 ? "invalid request" : issues.map((i) => `${i.path}: ${i.message}`).join("; ")
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
