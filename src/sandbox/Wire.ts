/** What the sandbox's four APIs read (request bodies) and write (JSON answers, rate-limit headers, bearer tokens). */
import { HttpServerResponse } from "@effect/platform"
import { Option, Schema } from "effect"
import { exact, type RetryAfter } from "./Knobs.js"

export const LoginBody = Schema.Struct({ email: Schema.String, password: Schema.String })

export const ChatBody = Schema.Struct({
  model: Schema.String,
  messages: Schema.Array(Schema.Struct({ role: Schema.String, content: Schema.String })),
  temperature: Schema.optionalWith(Schema.Number, exact),
  max_tokens: Schema.optionalWith(Schema.Number, exact)
})

export const NewsBody = Schema.Struct({
  q: Schema.String,
  num: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), exact)
})

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

// unsafeJson only fails on values JSON.stringify rejects (cycles, bigint); ours are plain data.
export const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(body, { status, headers })

export const errorJson = (status: number, error: string) => json({ error }, status)

export const badRequest = (error: string) => errorJson(400, error)

export const rateLimitHeaders = (retryAfter: RetryAfter, nowMs: number): Record<string, string> => {
  switch (retryAfter.kind) {
    case "seconds":
      return { "retry-after": String(retryAfter.seconds) }
    case "http-date":
      // HTTP dates have whole seconds; round the target up so a client never retries early.
      return { "retry-after": new Date(Math.ceil((nowMs + retryAfter.seconds * 1000) / 1000) * 1000).toUTCString() }
    case "reset-header":
      return { "x-ratelimit-reset-requests": `${retryAfter.seconds}s` }
    case "none":
      return {}
  }
}

export const bearer = (header: string | undefined): Option.Option<string> => {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
  return Option.fromNullable(match?.[1])
}
