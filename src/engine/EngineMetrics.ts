/**
 * The engine's metrics, as Effect `Metric`s (exported to Prometheus by the service). Tagged
 * instances are built once per run or per breaker, never per item, because tagging allocates.
 */
import { Metric, MetricBoundaries } from "effect"
import type { ErrorType } from "./Errors.js"
import type { RetryClass } from "./RetryPolicy.js"
import type { ItemStatus } from "./ItemResult.js"

export const attempts = Metric.counter("pp_attempts_total", {
  description: "Attempts started, by processor and outcome (success or error type)",
  incremental: true
})

export const retries = Metric.counter("pp_retries_total", {
  description: "Retries scheduled, by processor and failure class",
  incremental: true
})

export const timeouts = Metric.counter("pp_attempt_timeouts_total", {
  description: "Attempts cut by their per-attempt timeout",
  incremental: true
})

export const items = Metric.counter("pp_items_total", {
  description: "Items finished, by processor and final status",
  incremental: true
})

export const attemptDuration = Metric.histogram(
  "pp_attempt_duration_seconds",
  MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 16 }),
  "Duration of one attempt (one upstream call), in seconds"
)

export const inFlight = Metric.gauge("pp_in_flight", {
  description: "Attempts running right now, by processor"
})

export const breakerState = Metric.gauge("pp_breaker_state", {
  description: "Circuit breaker state by key: 0 closed, 1 half-open, 2 open"
})

export const breakerTransitions = Metric.counter("pp_breaker_transitions_total", {
  description: "Circuit breaker state changes, by key and new state",
  incremental: true
})

/** The metric instances one run updates, tagged with its processor name once. */
export interface RunMetrics {
  readonly attemptOutcome: (outcome: "success" | ErrorType) => Metric.Metric.Counter<number>
  readonly retryClass: (cls: RetryClass) => Metric.Metric.Counter<number>
  readonly itemStatus: (status: ItemStatus) => Metric.Metric.Counter<number>
  readonly timeouts: Metric.Metric.Counter<number>
  readonly attemptDuration: typeof attemptDuration
  readonly inFlight: Metric.Metric.Gauge<number>
}

const outcomes = [
  "success",
  "timeout",
  "rate_limited",
  "upstream_unavailable",
  "upstream_rejected",
  "invalid_response",
  "circuit_open",
  "deadline_exceeded",
  "cancelled",
  "unexpected",
  "skipped"
] as const

const tagEach = <K extends string>(
  keys: ReadonlyArray<K>,
  metric: Metric.Metric.Counter<number>,
  processor: string,
  label: string
): ((key: K) => Metric.Metric.Counter<number>) => {
  const byKey = new Map(
    keys.map((k) => [k, metric.pipe(Metric.tagged("processor", processor), Metric.tagged(label, k))] as const)
  )
  return (key) => byKey.get(key) ?? metric
}

export const forRun = (processor: string): RunMetrics => ({
  attemptOutcome: tagEach(outcomes, attempts, processor, "outcome"),
  retryClass: tagEach(["timeout", "rate_limited", "transient", "circuit_open"], retries, processor, "class"),
  itemStatus: tagEach(["succeeded", "failed", "cancelled", "skipped"], items, processor, "status"),
  timeouts: timeouts.pipe(Metric.tagged("processor", processor)),
  attemptDuration: attemptDuration.pipe(Metric.tagged("processor", processor)),
  inFlight: inFlight.pipe(Metric.tagged("processor", processor))
})
