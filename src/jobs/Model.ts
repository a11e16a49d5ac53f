/**
 * The job model shared by the store, the runner and the HTTP API: what a job is, the three kinds of
 * work it can hold, its lifecycle, and the progress events a caller sees while it runs.
 */
import { Schema } from "effect"
import * as Budget from "../engine/Budget.js"
import * as ItemResult from "../engine/ItemResult.js"
import { TriggerConfig } from "../processors/IntradayTriggers.js"
import { TrackedPost } from "../processors/Interactions.js"
import { PostRequest } from "../processors/PostGeneration.js"
import { Interactions } from "../upstream/Forum.js"
import { ScreenedStock } from "../upstream/Market.js"
import { NewsItem } from "../upstream/News.js"

export const jobKinds = ["interactions", "post-generation", "intraday-triggers"] as const
export const JobKind = Schema.Literal(...jobKinds)
export type JobKind = typeof JobKind.Type

export const jobStatuses = ["pending", "running", "completed", "cancelled"] as const
export const JobStatus = Schema.Literal(...jobStatuses)
export type JobStatus = typeof JobStatus.Type
export const isTerminal = (status: JobStatus): boolean => status === "completed" || status === "cancelled"

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
export const Priority = Schema.Literal(...Budget.priorities)

/** Per-job limits; absent fields follow the processor's current settings (`PATCH /api/processors`). */
export const JobOptions = Schema.Struct({
  maxConcurrent: Schema.optionalWith(MaxConcurrent, { exact: true }),
  timeoutSeconds: Schema.optionalWith(TimeoutSeconds, { exact: true }),
  priority: Schema.optionalWith(Priority, { exact: true }),
  deadlineSeconds: Schema.optionalWith(DeadlineSeconds, { exact: true })
})
export type JobOptions = typeof JobOptions.Type

export const GeneratedPost = Schema.Struct({
  content: Schema.String,
  model: Schema.String,
  usage: Schema.NullOr(
    Schema.Struct({ promptTokens: Schema.Number, completionTokens: Schema.Number, totalTokens: Schema.Number })
  )
})

export const TriggerResult = Schema.Struct({
  triggerKey: Schema.String,
  stocks: Schema.Array(ScreenedStock),
  news: Schema.Array(NewsItem)
})

/** Input and result-value schemas of each kind. */
export const kindSchemas = {
  interactions: { input: TrackedPost, value: Interactions },
  "post-generation": { input: PostRequest, value: GeneratedPost },
  "intraday-triggers": { input: TriggerConfig, value: TriggerResult }
} as const

export const AnyItemResult = ItemResult.schema(Schema.Unknown)
export type AnyItemResult = typeof AnyItemResult.Type

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
  total: Schema.Number,
  completed: Schema.Number,
  succeeded: Schema.Number,
  failed: Schema.Number,
  cancelled: Schema.Number,
  skipped: Schema.Number,
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

/**
 * One line of NDJSON / one SSE event, discriminated by `type`. `seq` numbers item events in finishing
 * order, so a client that reconnects can tell replayed events from new ones.
 */
const event = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ type: Schema.Literal(type), ...fields })

export const JobEvent = Schema.Union(
  event("started", { jobId: Schema.String, kind: JobKind, total: Schema.Number, at: Schema.String }),
  event("item", { jobId: Schema.String, seq: Schema.Number, result: AnyItemResult }),
  event("progress", {
    jobId: Schema.String,
    ...Counts.fields,
    inFlight: Schema.Number,
    etaMs: Schema.optionalWith(Schema.Number, { exact: true })
  }),
  event("completed", { jobId: Schema.String, job: JobView })
)
export type JobEvent = typeof JobEvent.Type

/** Counts that grow as items finish (the runner's, a replay's, a follower's). */
export type Tally = { -readonly [K in keyof Counts]: Counts[K] }

export const emptyTally = (total: number): Tally => ({ total, completed: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 })

/** Adds `n` finished items of `status`. */
export const tally = (counts: Tally, status: ItemResult.ItemStatus, n = 1): void => {
  counts.completed += n
  counts[status] += n
}

/**
 * The two events one finished item produces, `item` then `progress` with the counts after it
 * (which the caller has already tallied).
 */
export const itemEvents = (
  jobId: string,
  item: { readonly seq: number; readonly result: AnyItemResult },
  counts: Counts,
  live: { readonly inFlight: number; readonly etaMs?: number } = { inFlight: 0 }
): readonly [JobEvent, JobEvent] => [
  { type: "item", jobId, seq: item.seq, result: item.result },
  { type: "progress", jobId, ...counts, ...live }
]

export const successOf = (status: JobStatus, counts: Counts): boolean =>
  status === "completed" && counts.failed === 0 && counts.cancelled === 0
