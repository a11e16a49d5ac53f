/**
 * The contract's error responses (JSON bodies `{ _tag, message }`), each with its HTTP status, and the
 * two middlewares every group declares: authorization and the pre-decode request checks.
 */
import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity } from "@effect/platform"
import { Schema } from "effect"

export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  {
    message: Schema.String,
    issues: Schema.optionalWith(Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })), { exact: true })
  },
  HttpApiSchema.annotations({ status: 400 })
) {}
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}
export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}
export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}
/** A body in another format than JSON (form data, multipart, text, …) on a route that takes JSON. */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 415 })
) {}
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** 503 from the front door's admission control; the response also carries `Retry-After`. */
export class Overloaded extends Schema.TaggedError<Overloaded>()(
  "Overloaded",
  { message: Schema.String, retryAfterSeconds: Schema.Int },
  HttpApiSchema.annotations({ status: 503 })
) {}

export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("Authorization", {
  failure: Unauthorized,
  security: {
    bearer: HttpApiSecurity.bearer,
    apiKey: HttpApiSecurity.apiKey({ in: "header", key: "X-API-Key" })
  }
}) {}

/**
 * Checks that need the matched route but must run before its body and query are decoded: query
 * parameters the route does not take, a body that is not JSON, JSON nested too deep to decode safely,
 * a `null` body (see `requestGuard` in `Middleware.ts`). Every group has it.
 */
export class RequestGuard extends HttpApiMiddleware.Tag<RequestGuard>()("RequestGuard", {
  failure: Schema.Union(BadRequest, UnsupportedMediaType)
}) {}
