/**
 * The progress events of a job: one NDJSON line or one SSE frame each, discriminated by `type`.
 * `seq` numbers item events in finishing order, so a client that reconnects can tell replayed events
 * from new ones (it is the SSE `id`, sent back as `Last-Event-ID`).
 */
import { Schema } from "effect"
import { AnyItemResult } from "./ItemResult.js"
import { Counts, JobView } from "./Job.js"
import { JobKind } from "./Kinds.js"

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
