/**
 * The HTTP contract of the service (no Node imports): the guide's three batch routes, jobs, tracked
 * posts and operations, with their request schemas, limits and error responses. The server
 * implements it (`Server.ts`), and `Client.ts` derives a typed client from it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Either, Encoding, JSONSchema, ParseResult, Schema } from "effect"
import { TriggerConfig } from "../processors/IntradayTriggers.js"
import { TrackedPost } from "../processors/Interactions.js"
import { PostRequest } from "../processors/PostGeneration.js"
import { formatRate, parseRate } from "../engine/Budget.js"
import { Interactions } from "../upstream/Forum.js"
import {
  JobDetail,
  JobEvent,
  JobKind,
  JobStatus,
  JobView,
  MAX_ITEMS_PER_BATCH,
  MaxConcurrent,
  Priority,
  TimeoutSeconds,
  DeadlineSeconds
} from "../jobs/Model.js"

// Every decode error is reported (not only the first), and unknown fields are errors, not ignored.
const strict = { parseOptions: { errors: "all", onExcessProperty: "error" } } as const

// ---- errors (JSON bodies: { error, message }) --------------------------------------------------

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

// ---- auth ----------------------------------------------------------------------------------------

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

// ---- shared request parts ------------------------------------------------------------------------

/**
 * Numbers in query strings and headers: decimal digits only. `NumberFromString` alone is `Number()`,
 * which also reads `0x10` as 16, `1e3` as 1000, `" 7 "` as 7 and `""` as 0.
 */
const decimalString = (pattern: RegExp, expected: string) =>
  Schema.String.pipe(
    Schema.filter((s) => pattern.test(s) || `Expected ${expected}, actual ${JSON.stringify(s.slice(0, 40))}`),
    Schema.compose(Schema.NumberFromString)
  )
/** A decimal integer written in a query string or header (`16`, not `0x10` or `1e1`). */
export const IntFromDecimal = decimalString(/^-?[0-9]{1,15}$/, "a decimal integer").pipe(Schema.compose(Schema.Int))
/** A decimal number written in a query string (`2.5`, not `0x10` or `1e1`). */
export const NumberFromDecimal = decimalString(/^-?[0-9]{1,15}(\.[0-9]{1,15})?$/, "a decimal number")

/**
 * `kolSerial` as a string (`"101"`), or as a whole number (`101`), which is normalised to its string:
 * the forum's serials are digits, and clients that hold them as numbers should not get a 400.
 */
const kolSerialInput = (serial: Schema.Schema<string, string>) =>
  Schema.Union(
    Schema.String,
    Schema.transform(Schema.Int.pipe(Schema.nonNegative()), Schema.String, {
      strict: true,
      decode: (n) => String(n),
      encode: (s) => Number(s)
    })
  ).pipe(Schema.compose(serial))

/** The tracked posts a request names (`kolSerial` may be a number). */
const TrackedPostInput = Schema.Struct({ ...TrackedPost.fields, kolSerial: kolSerialInput(TrackedPost.fields.kolSerial) })
const PostRequestInput = Schema.Struct({ ...PostRequest.fields, kolSerial: kolSerialInput(PostRequest.fields.kolSerial) })

const Limits = {
  maxConcurrent: Schema.optionalWith(MaxConcurrent, { exact: true }),
  timeoutSeconds: Schema.optionalWith(TimeoutSeconds, { exact: true }),
  /** The whole batch's deadline: finished results are kept, the rest ends `deadline_exceeded`. */
  deadlineSeconds: Schema.optionalWith(DeadlineSeconds, { exact: true })
}

/** `Prefer: respond-async` → 202 + Location; `Idempotency-Key` → the same job for a retried request. */
export const BatchHeaders = Schema.Struct({
  prefer: Schema.optional(Schema.String),
  accept: Schema.optional(Schema.String),
  "idempotency-key": Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)))
})

const batch = <A, I>(item: Schema.Schema<A, I>) => Schema.Array(item).pipe(Schema.maxItems(MAX_ITEMS_PER_BATCH))

/** A body that may be absent: no body decodes as `{}` instead of failing. */
const optionalBody = <A, I>(body: Schema.Schema<A, I>) =>
  Schema.compose(
    Schema.transform(Schema.Unknown, Schema.Unknown, {
      strict: true,
      decode: (u) => u ?? {},
      encode: (u) => u
    }),
    body
  ).annotations({ jsonSchema: JSONSchema.make(body), ...strict })

/** A job's turn at the upstream budgets (`high | normal | low`, default `normal`). */
const JobPriority = { priority: Schema.optionalWith(Priority, { exact: true }) }

export const FetchAllBody = Schema.Struct({
  posts: Schema.optionalWith(batch(TrackedPostInput), { exact: true }),
  ...Limits,
  ...JobPriority
}).annotations({ identifier: "FetchAllInteractions", ...strict })

export const BatchGenerateBody = Schema.Struct({
  requests: batch(PostRequestInput).pipe(Schema.minItems(1)),
  ...Limits,
  ...JobPriority
}).annotations({ identifier: "BatchGenerate", ...strict })

export const TriggerConfigs = batch(TriggerConfig).pipe(Schema.minItems(1)).annotations({
  identifier: "TriggerConfigs",
  ...strict
})

export const LimitParams = Schema.Struct({
  maxConcurrent: Schema.optionalWith(IntFromDecimal.pipe(Schema.compose(MaxConcurrent)), { exact: true }),
  timeoutSeconds: Schema.optionalWith(NumberFromDecimal.pipe(Schema.compose(TimeoutSeconds)), { exact: true }),
  deadlineSeconds: Schema.optionalWith(NumberFromDecimal.pipe(Schema.compose(DeadlineSeconds)), { exact: true }),
  ...JobPriority
}).annotations(strict)

export const ImportPostsBody = Schema.Struct({
  posts: batch(TrackedPostInput).pipe(Schema.minItems(1))
}).annotations({ identifier: "ImportPosts", ...strict })

/** Where a page of `GET /api/jobs` ended: the last job's creation time and id (the list's sort key). */
export interface JobCursor {
  readonly createdAt: number
  readonly id: string
}

/** Opaque to clients: base64url of `<createdAt>.<id>`. */
export const encodeJobCursor = (cursor: JobCursor) => Encoding.encodeBase64Url(`${cursor.createdAt}.${cursor.id}`)

const decodeJobCursor = (raw: string): Either.Either<JobCursor, string> => {
  const text = Either.getOrElse(Encoding.decodeBase64UrlString(raw), () => "")
  const match = /^([0-9]{1,16})\.([0-9a-zA-Z-]{1,100})$/.exec(text)
  return match?.[1] === undefined || match[2] === undefined
    ? Either.left("Expected a cursor from the `next` field of a previous page")
    : Either.right({ createdAt: Number(match[1]), id: match[2] })
}

export const JobCursorFromString = Schema.transformOrFail(
  Schema.String.pipe(Schema.maxLength(200)),
  Schema.Struct({ createdAt: Schema.Number, id: Schema.String }),
  {
    strict: true,
    decode: (raw, _, ast) =>
      Either.match(decodeJobCursor(raw), {
        onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, raw, message)),
        onRight: ParseResult.succeed
      }),
    encode: (cursor) => ParseResult.succeed(encodeJobCursor(cursor))
  }
)

export const ListJobsParams = Schema.Struct({
  kind: Schema.optionalWith(JobKind, { exact: true }),
  status: Schema.optionalWith(JobStatus, { exact: true }),
  /** Default 50. */
  limit: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(1, 200)), { exact: true }),
  /** The `next` of the previous page: the jobs after it (keyset paging; stable while jobs are created). */
  cursor: Schema.optionalWith(JobCursorFromString, { exact: true }),
  /** Default 0. Offset paging, kept for old clients: jobs created meanwhile shift it (duplicates). */
  offset: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, 1_000_000_000)), { exact: true })
}).annotations(strict)

/** Inline results of `GET /api/jobs/{id}` and a page of `GET /api/jobs/{id}/results`: at most this many. */
export const MAX_RESULTS_PAGE = 1_000

export const JobParams = Schema.Struct({
  /** How many results (by index) to include, 0–1000, default 1000; the rest via `/results`. */
  results: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, MAX_RESULTS_PAGE)), { exact: true })
}).annotations(strict)

export const ResultsParams = Schema.Struct({
  /** The index of the last result already read: the page starts after it. Default: from the start. */
  after: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, MAX_ITEMS_PER_BATCH)), { exact: true }),
  /** Default 100, at most 1000. */
  limit: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(1, MAX_RESULTS_PAGE)), { exact: true })
}).annotations(strict)

export const ProcessorName = Schema.Literal("interactions", "post_generation", "intraday_triggers")
export type ProcessorName = typeof ProcessorName.Type

export const ProcessorPatch = Schema.Struct(Limits).annotations({ identifier: "ProcessorPatch", ...strict })

// ---- responses -----------------------------------------------------------------------------------

/** The synchronous answer of a batch route: the finished job with its results in input order. */
export const BatchResponse = JobDetail.annotations({ identifier: "BatchResponse" })

export const JobAccepted = Schema.Struct({
  ...JobView.fields,
  location: Schema.String
}).annotations({ identifier: "JobAccepted" })

export const JobPage = Schema.Struct({
  jobs: Schema.Array(JobView),
  /** Jobs matching the filter now (all pages). */
  total: Schema.Number,
  limit: Schema.Number,
  /** Only on offset-paged requests (`offset=`); absent with `cursor=`. */
  offset: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Present when more jobs may follow: pass it as `cursor` for the next page. */
  next: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "JobPage" })

/** `GET /api/jobs/{id}`: the job with its first results by index; `moreResults` links to the rest. */
export const JobWithResults = Schema.Struct({
  ...JobDetail.fields,
  /** Present when finished results beyond `results` exist: where to read them (`/results?after=…`). */
  moreResults: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "Job" })

/** `GET /api/jobs/{id}/results`: finished results in input order, keyset-paged by index. */
export const ResultsPage = Schema.Struct({
  jobId: Schema.String,
  status: JobStatus,
  total: Schema.Number,
  completed: Schema.Number,
  results: JobDetail.fields.results,
  /** Present when more finished results follow: pass it as `after` for the next page. */
  next: Schema.optionalWith(Schema.Number, { exact: true })
}).annotations({ identifier: "ResultsPage" })

const WithFetchedAt = Schema.Struct({ ...Interactions.fields, fetchedAt: Schema.String })

export const TrackedPostView = Schema.Struct({
  postId: Schema.String,
  articleId: Schema.optionalWith(Schema.String, { exact: true }),
  kolSerial: Schema.String,
  stockCode: Schema.optionalWith(Schema.String, { exact: true }),
  content: Schema.optionalWith(Schema.String, { exact: true }),
  source: Schema.Literal("imported", "generated"),
  jobId: Schema.optionalWith(Schema.String, { exact: true }),
  createdAt: Schema.String,
  updatedAt: Schema.String,
  interactions: Schema.optionalWith(WithFetchedAt, { exact: true }),
  history: Schema.Array(Schema.Struct({ ...WithFetchedAt.fields, jobId: Schema.String }))
}).annotations({ identifier: "TrackedPost" })

export const ProcessorView = Schema.Struct({
  name: ProcessorName,
  maxConcurrent: Schema.Number,
  timeoutSeconds: Schema.Number
}).annotations({ identifier: "Processor" })

/** A request rate as written by people (`600/minute`, `10/second`), decoded once into a `Budget.Rate`. */
const RateFromString = Schema.transformOrFail(
  Schema.String,
  Schema.Struct({ limit: Schema.Number, perMs: Schema.Number }),
  {
    strict: true,
    decode: (raw, _, ast) => {
      const rate = parseRate(raw)
      return rate === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, raw, "expected a rate like 600/minute or 10/second"))
        : ParseResult.succeed(rate)
    },
    encode: (rate) => ParseResult.succeed(formatRate(rate))
  }
)

/** `PATCH /api/upstreams/{key}`: every field optional; `rate: null` removes the request rate. */
export const UpstreamPatch = Schema.Struct({
  ceiling: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 256)), { exact: true }),
  adaptive: Schema.optionalWith(Schema.Boolean, { exact: true }),
  rate: Schema.optionalWith(Schema.NullOr(RateFromString), { exact: true })
}).annotations({ identifier: "UpstreamPatch", ...strict })

export const UpstreamView = Schema.Struct({
  key: Schema.String,
  /** Calls in flight against the upstream never exceed it, all jobs (and instances) together. */
  ceiling: Schema.Number,
  /** With several instances: this instance's part of the ceiling right now. */
  share: Schema.optionalWith(Schema.Number, { exact: true }),
  /** The adaptive limit now, between 1 and the ceiling. */
  limit: Schema.Number,
  inFlight: Schema.Number,
  waitingItems: Schema.Number,
  waitingJobs: Schema.Number,
  /** While the upstream asked everyone to wait: until when. */
  cooldownUntil: Schema.optionalWith(Schema.String, { exact: true }),
  rate: Schema.optionalWith(Schema.String, { exact: true }),
  algorithm: Schema.String,
  adaptive: Schema.Boolean,
  /** Calls answered 429 since the start. */
  throttled: Schema.Number,
  cooldowns: Schema.Number
}).annotations({ identifier: "Upstream" })

export const BreakerView = Schema.Struct({
  key: Schema.String,
  status: Schema.Literal("closed", "open", "half_open"),
  since: Schema.String,
  retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true }),
  probesInFlight: Schema.Number
}).annotations({ identifier: "Breaker" })

const Ndjson = HttpApiSchema.Text({ contentType: "application/x-ndjson" })

// ---- groups --------------------------------------------------------------------------------------

export class BatchesGroup extends HttpApiGroup.make("batches")
  .add(
    HttpApiEndpoint.post("fetchAllInteractions", "/api/interactions/fetch-all-interactions")
      .setPayload(optionalBody(FetchAllBody))
      .setHeaders(BatchHeaders)
      .addSuccess(BatchResponse)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(OpenApi.Description, "Fetch views/likes/comments/shares for the given posts, or every tracked post with an articleId.")
  )
  .add(
    HttpApiEndpoint.post("batchGenerateStream", "/api/post/batch-generate-stream")
      .setPayload(BatchGenerateBody)
      .setHeaders(BatchHeaders)
      .addSuccess(Ndjson)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(
        OpenApi.Description,
        "Generate posts with the LLM. Streams NDJSON events (started, item, progress, completed); SSE with Accept: text/event-stream."
      )
  )
  .add(
    HttpApiEndpoint.post("executeMultiple", "/api/intraday/parallel/execute-multiple")
      .setPayload(TriggerConfigs)
      .setUrlParams(LimitParams)
      .setHeaders(BatchHeaders)
      .addSuccess(BatchResponse)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(OpenApi.Description, "Run intraday triggers (market screen + news search) in parallel.")
  )
  .addError(BadRequest)
  .addError(Unavailable)
  .addError(Overloaded)
  .middleware(RequestGuard)
  .middleware(Authorization) {}

export class JobsGroup extends HttpApiGroup.make("jobs")
  .add(HttpApiEndpoint.get("list", "/api/jobs").setUrlParams(ListJobsParams).addSuccess(JobPage))
  .add(
    HttpApiEndpoint.get("get", "/api/jobs/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .setUrlParams(JobParams)
      .addSuccess(JobWithResults)
      .addError(NotFound)
      .annotate(OpenApi.Description, "The job with its first 1000 results by index (`?results=0`–`1000` for fewer); the rest via /results.")
  )
  .add(
    HttpApiEndpoint.get("results", "/api/jobs/:id/results")
      .setPath(Schema.Struct({ id: Schema.String }))
      .setUrlParams(ResultsParams)
      .addSuccess(ResultsPage)
      .addError(NotFound)
      .annotate(OpenApi.Description, "A job's finished results in input order, paged by index: `after` = the previous page's `next`.")
  )
  .add(
    HttpApiEndpoint.get("events", "/api/jobs/:id/events")
      .setPath(Schema.Struct({ id: Schema.String }))
      .setHeaders(
        Schema.Struct({
          accept: Schema.optional(Schema.String),
          /** SSE reconnect: the `id` (item seq) of the last event received; older ones are not replayed. */
          "last-event-id": Schema.optional(IntFromDecimal)
        })
      )
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .addError(NotFound)
      .annotate(OpenApi.Description, "Server-sent events: stored events replayed, then live ones until the job ends (NDJSON with Accept: application/x-ndjson).")
  )
  .add(
    HttpApiEndpoint.del("cancel", "/api/jobs/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(JobView)
      .addError(NotFound)
  )
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}

export class PostsGroup extends HttpApiGroup.make("posts")
  .add(
    HttpApiEndpoint.post("import", "/api/posts")
      .setPayload(ImportPostsBody)
      .addSuccess(Schema.Struct({ imported: Schema.Number }))
  )
  .add(
    HttpApiEndpoint.get("get", "/api/posts/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(TrackedPostView)
      .addError(NotFound)
  )
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}

export class ProcessorsGroup extends HttpApiGroup.make("processors")
  .add(HttpApiEndpoint.get("list", "/api/processors").addSuccess(Schema.Array(ProcessorView)))
  .add(
    HttpApiEndpoint.patch("update", "/api/processors/:name")
      .setPath(Schema.Struct({ name: Schema.String }))
      .setPayload(ProcessorPatch)
      .addSuccess(ProcessorView)
      .addError(NotFound)
      .annotate(OpenApi.Description, "Change maxConcurrent / timeoutSeconds at run time; running batches pick the change up.")
  )
  .add(HttpApiEndpoint.get("breakers", "/api/breakers").addSuccess(Schema.Array(BreakerView)))
  .add(
    HttpApiEndpoint.get("upstreams", "/api/upstreams")
      .addSuccess(Schema.Array(UpstreamView))
      .annotate(OpenApi.Description, "Each upstream's budget: ceiling, current adaptive limit, in flight, waiting, cooldown, rate.")
  )
  .add(
    HttpApiEndpoint.patch("updateUpstream", "/api/upstreams/:key")
      .setPath(Schema.Struct({ key: Schema.String }))
      .setPayload(UpstreamPatch)
      .addSuccess(UpstreamView)
      .addError(NotFound)
      .annotate(OpenApi.Description, "Change an upstream's ceiling, request rate or adaptation; applied at once.")
  )
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}

// No API key here (probes and scrapers), but the same request checks.
export class OpsGroup extends HttpApiGroup.make("ops")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Schema.Struct({ status: Schema.Literal("ok") })))
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready") }))
      .addError(Unavailable)
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics").addSuccess(
      HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" })
    )
  )
  .middleware(RequestGuard) {}

export class Api extends HttpApi.make("parallel-processor")
  .add(BatchesGroup)
  .add(JobsGroup)
  .add(PostsGroup)
  .add(ProcessorsGroup)
  .add(OpsGroup)
  .addError(NotFound)
  .addError(Unavailable)
  .annotate(OpenApi.Title, "parallel-processor")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(
    OpenApi.Description,
    "Runs many slow, flaky upstream calls in parallel as durable jobs: timeouts, retries, circuit breakers, streaming progress."
  ) {}

export { JobEvent }
