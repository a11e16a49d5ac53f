/**
 * What a job is to its callers: its lifecycle, the limits a request may set, its counts, and the job
 * as the API shows it (with or without its results).
 */
import { Schema } from "effect"
import { AnyItemResult } from "./ItemResult.js"
import { JobKind } from "./Kinds.js"

export const jobStatuses = ["pending", "running", "completed", "cancelled"] as const
export const JobStatus = Schema.Literal(...jobStatuses)
export type JobStatus = typeof JobStatus.Type

/** Upper bound on items per batch: keeps one request's memory and response size bounded. */
export const MAX_ITEMS_PER_BATCH = 10_000

/**
 * Per request. 64 was the single-instance bound; with several instances the limit is held
 * cluster-wide and a fleet can use more (the scale-out scenario asks for 150).
 */
export const MaxConcurrent = Schema.Int.pipe(Schema.between(1, 256))
export const TimeoutSeconds = Schema.Number.pipe(Schema.between(0.1, 3600))
/**
 * The whole batch's deadline (the guide's overall timeout), from the job's first start — stored, so
 * a job resumed after a restart keeps it. Up to a day.
 */
export const DeadlineSeconds = Schema.Number.pipe(Schema.between(0.1, 86_400))

/** A job's turn at the upstream budgets: higher levels first, round-robin between jobs within one. */
export const priorities = ["high", "normal", "low"] as const
export const Priority = Schema.Literal(...priorities)
export type Priority = typeof Priority.Type

/** Per-job limits; absent fields follow the processor's current settings (`PATCH /api/processors`). */
export const JobOptions = Schema.Struct({
  maxConcurrent: Schema.optionalWith(MaxConcurrent, { exact: true }),
  timeoutSeconds: Schema.optionalWith(TimeoutSeconds, { exact: true }),
  priority: Schema.optionalWith(Priority, { exact: true }),
  deadlineSeconds: Schema.optionalWith(DeadlineSeconds, { exact: true })
})
export type JobOptions = typeof JobOptions.Type

export const Counts = Schema.Struct({
  total: Schema.Number,
  completed: Schema.Number,
  succeeded: Schema.Number,
  failed: Schema.Number,
  cancelled: Schema.Number,
  skipped: Schema.Number
})
export type Counts = typeof Counts.Type

/** A job as the API shows it. `success` keeps the original service's summary field. */
export const JobView = Schema.Struct({
  id: Schema.String,
  kind: JobKind,
  status: JobStatus,
  success: Schema.Boolean,
  ...Counts.fields,
  options: JobOptions,
  idempotencyKey: Schema.optionalWith(Schema.String, { exact: true }),
  createdAt: Schema.String,
  startedAt: Schema.optionalWith(Schema.String, { exact: true }),
  finishedAt: Schema.optionalWith(Schema.String, { exact: true }),
  durationMs: Schema.optionalWith(Schema.Number, { exact: true })
})
export type JobView = typeof JobView.Type

/** A job with its item results in input order (items not finished yet are absent). */
export const JobDetail = Schema.Struct({
  ...JobView.fields,
  results: Schema.Array(AnyItemResult)
})
export type JobDetail = typeof JobDetail.Type
