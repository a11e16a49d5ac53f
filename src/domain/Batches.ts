/**
 * The guide's three batch routes as data: their bodies, query limits and headers, and the two ways
 * they answer (the finished job, or 202 + where to follow it).
 */
import { Schema } from "effect"
import { DeadlineSeconds, JobDetail, JobView, MaxConcurrent, Priority, TimeoutSeconds } from "./Job.js"
import { PostRequest, TrackedPost, TriggerConfig } from "./Kinds.js"
import { batch, IntFromDecimal, kolSerialInput, NumberFromDecimal, optionalBody, strict } from "./Wire.js"

/** The tracked posts a request names (`kolSerial` may be a number). */
export const TrackedPostInput = Schema.Struct({ ...TrackedPost.fields, kolSerial: kolSerialInput(TrackedPost.fields.kolSerial) })
const PostRequestInput = Schema.Struct({ ...PostRequest.fields, kolSerial: kolSerialInput(PostRequest.fields.kolSerial) })

/** The limits a request may set for its own run (and `PATCH /api/processors` for every run). */
export const Limits = {
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
export type BatchHeaders = typeof BatchHeaders.Type

/** A job's turn at the upstream budgets (`high | normal | low`, default `normal`). */
const JobPriority = { priority: Schema.optionalWith(Priority, { exact: true }) }

export const FetchAllBody = Schema.Struct({
  posts: Schema.optionalWith(batch(TrackedPostInput), { exact: true }),
  ...Limits,
  ...JobPriority
}).annotations({ identifier: "FetchAllInteractions", ...strict })

/** `POST /api/interactions/fetch-all-interactions`: no body means every tracked post with an articleId. */
export const FetchAllPayload = optionalBody(FetchAllBody)

export const BatchGenerateBody = Schema.Struct({
  requests: batch(PostRequestInput).pipe(Schema.minItems(1)),
  ...Limits,
  ...JobPriority
}).annotations({ identifier: "BatchGenerate", ...strict })

export const TriggerConfigs = batch(TriggerConfig).pipe(Schema.minItems(1)).annotations({
  identifier: "TriggerConfigs",
  ...strict
})

/** `execute-multiple`'s limits, in its query string. */
export const LimitParams = Schema.Struct({
  maxConcurrent: Schema.optionalWith(IntFromDecimal.pipe(Schema.compose(MaxConcurrent)), { exact: true }),
  timeoutSeconds: Schema.optionalWith(NumberFromDecimal.pipe(Schema.compose(TimeoutSeconds)), { exact: true }),
  deadlineSeconds: Schema.optionalWith(NumberFromDecimal.pipe(Schema.compose(DeadlineSeconds)), { exact: true }),
  ...JobPriority
}).annotations(strict)

/** The synchronous answer of a batch route: the finished job with its results in input order. */
export const BatchResponse = JobDetail.annotations({ identifier: "BatchResponse" })

export const JobAccepted = Schema.Struct({
  ...JobView.fields,
  location: Schema.String
}).annotations({ identifier: "JobAccepted" })
