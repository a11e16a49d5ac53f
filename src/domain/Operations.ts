/**
 * What an operator reads and changes while the service runs: the processors' limits, the upstream
 * budgets (and their recent history) and the circuit breakers, and which instances are alive.
 */
import { Schema } from "effect"
import { Limits } from "./Batches.js"
import { RateFromString } from "./Rate.js"
import { strict } from "./Wire.js"

export const processorNames = ["interactions", "post_generation", "intraday_triggers"] as const
export const ProcessorName = Schema.Literal(...processorNames)
export type ProcessorName = typeof ProcessorName.Type

export const ProcessorPatch = Schema.Struct(Limits).annotations({ identifier: "ProcessorPatch", ...strict })

export const ProcessorView = Schema.Struct({
  name: ProcessorName,
  maxConcurrent: Schema.Number,
  timeoutSeconds: Schema.Number
}).annotations({ identifier: "Processor" })

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
export type UpstreamView = typeof UpstreamView.Type

export const BreakerView = Schema.Struct({
  key: Schema.String,
  status: Schema.Literal("closed", "open", "half_open"),
  since: Schema.String,
  retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true }),
  probesInFlight: Schema.Number
}).annotations({ identifier: "Breaker" })

/**
 * `GET /api/instances`: one entry per instance sharing the job database. Alone on the embedded file,
 * this process; in a cluster, every runner the cluster has registered, dead ones included until the
 * cluster forgets them (`alive` says which).
 */
export const InstanceView = Schema.Struct({
  /** The runner's name among the instances (its runner address in a cluster, "local" alone). */
  id: Schema.String,
  /** Where the other runners reach it (`RUNNER_HOST:RUNNER_PORT`), in a cluster. */
  address: Schema.optionalWith(Schema.String, { exact: true }),
  /**
   * Marked healthy by the cluster and seen within the runners' lock expiration. The instance that
   * answers can be `false` too: its heartbeat is late, and the others may take its shards.
   */
  alive: Schema.Boolean,
  /** The instance that answered this request. */
  self: Schema.Boolean,
  /** When it started, where known (this instance). */
  startedAt: Schema.optionalWith(Schema.String, { exact: true }),
  /** Its last heartbeat. */
  lastSeen: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "Instance" })
export type InstanceView = typeof InstanceView.Type

/** One upstream's budget at one moment: what the dashboard charts. */
export const UpstreamPoint = Schema.Struct({
  key: Schema.String,
  limit: Schema.Number,
  ceiling: Schema.Number,
  inFlight: Schema.Number,
  waiting: Schema.Number,
  /** Calls answered 429 since the start (a counter: the chart shows its increase). */
  throttled: Schema.Number
}).annotations({ identifier: "UpstreamPoint" })
export type UpstreamPoint = typeof UpstreamPoint.Type

/** `GET /api/upstreams/history`: this instance's budgets sampled every `intervalMs`, oldest first. */
export const UpstreamHistoryView = Schema.Struct({
  intervalMs: Schema.Number,
  samples: Schema.Array(
    Schema.Struct({ at: Schema.String, upstreams: Schema.Array(UpstreamPoint) }).annotations({ identifier: "UpstreamSample" })
  )
}).annotations({ identifier: "UpstreamHistory" })
export type UpstreamHistoryView = typeof UpstreamHistoryView.Type
