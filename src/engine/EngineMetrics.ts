/**
 * The engine's metrics, as Effect `Metric`s (exported to Prometheus by the service).
 *
 * Tags are baked into each metric's key once per run or per breaker: a metric tagged with
 * `Metric.tagged` rebuilds and hashes its key on every update, which cost more than the rest of an
 * attempt on the hot path. The pool updates these with `unsafeUpdate` inside its synchronous
 * bookkeeping for the same reason.
 */
import { Metric, MetricBoundaries, MetricKey, MetricLabel } from "effect"
import { errorTypes, type ErrorType } from "./Errors.js"
import type { ItemStatus } from "./ItemResult.js"
import type { RetryClass } from "./RetryPolicy.js"

const attemptsKey = MetricKey.counter("pp_attempts_total", {
  description: "Attempts started, by processor and outcome (success or error type)",
  incremental: true
})
const retriesKey = MetricKey.counter("pp_retries_total", {
  description: "Retries scheduled, by processor and failure class",
  incremental: true
})
const timeoutsKey = MetricKey.counter("pp_attempt_timeouts_total", {
  description: "Attempts cut by their per-attempt timeout, by processor",
  incremental: true
})
const itemsKey = MetricKey.counter("pp_items_total", {
  description: "Items finished, by processor and final status",
  incremental: true
})
const attemptDurationKey = MetricKey.histogram(
  "pp_attempt_duration_seconds",
  MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 16 }),
  "Duration of one attempt (one upstream call), in seconds"
)
const inFlightKey = MetricKey.gauge("pp_in_flight", { description: "Attempts running right now, by processor" })
const breakerStateKey = MetricKey.gauge("pp_breaker_state", {
  description: "Circuit breaker state by key: 0 closed, 1 half-open, 2 open"
})
const breakerTransitionsKey = MetricKey.counter("pp_breaker_transitions_total", {
  description: "Circuit breaker state changes, by key and new state",
  incremental: true
})

type Labels = ReadonlyArray<readonly [string, string]>

const labelsOf = (labels: Labels) => labels.map(([k, v]) => MetricLabel.make(k, v))
const counterWith = (key: MetricKey.MetricKey.Counter<number>, labels: Labels) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labelsOf(labels)))
const gaugeWith = (key: MetricKey.MetricKey.Gauge<number>, labels: Labels) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labelsOf(labels)))
const histogramWith = (key: MetricKey.MetricKey.Histogram, labels: Labels) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labelsOf(labels)))

/** No fiber-level labels: the engine's metrics carry their own tags. */
export const noExtraTags: ReadonlyArray<MetricLabel.MetricLabel> = []

export const breakerState = (key: string) => gaugeWith(breakerStateKey, [["key", key]])
export const breakerTransitions = (key: string, to: string) =>
  counterWith(breakerTransitionsKey, [
    ["key", key],
    ["to", to]
  ])

type Counter = Metric.Metric.Counter<number>

/** The metric instances one run updates, tagged with its processor name once. */
export interface RunMetrics {
  readonly attemptOutcome: (outcome: "success" | ErrorType) => Counter
  readonly retryClass: (cls: RetryClass) => Counter
  readonly itemStatus: (status: ItemStatus) => Counter
  readonly timeouts: Counter
  readonly attemptDuration: Metric.Metric.Histogram<number>
  readonly inFlight: Metric.Metric.Gauge<number>
}

const outcomes: ReadonlyArray<"success" | ErrorType> = ["success", ...errorTypes]

const perLabel = <K extends string>(
  keys: ReadonlyArray<K>,
  key: MetricKey.MetricKey.Counter<number>,
  processor: string,
  label: string
): ((value: K) => Counter) => {
  const byValue = new Map(
    keys.map(
      (k) =>
        [
          k,
          counterWith(key, [
            ["processor", processor],
            [label, k]
          ])
        ] as const
    )
  )
  const fallback = counterWith(key, [["processor", processor]])
  return (value) => byValue.get(value) ?? fallback
}

const cache = new Map<string, RunMetrics>()

/** Metric instances for one processor name (cached: runs of the same processor share them). */
export const forRun = (processor: string): RunMetrics => {
  const cached = cache.get(processor)
  if (cached !== undefined) return cached
  const metrics: RunMetrics = {
    attemptOutcome: perLabel(outcomes, attemptsKey, processor, "outcome"),
    retryClass: perLabel(["timeout", "rate_limited", "transient", "circuit_open"], retriesKey, processor, "class"),
    itemStatus: perLabel(["succeeded", "failed", "cancelled", "skipped"], itemsKey, processor, "status"),
    timeouts: counterWith(timeoutsKey, [["processor", processor]]),
    attemptDuration: histogramWith(attemptDurationKey, [["processor", processor]]),
    inFlight: gaugeWith(inFlightKey, [["processor", processor]])
  }
  cache.set(processor, metrics)
  return metrics
}

const upstreamLimitKey = MetricKey.gauge("pp_upstream_limit", { description: "Current adaptive limit of an upstream budget" })
const upstreamInFlightKey = MetricKey.gauge("pp_upstream_in_flight", { description: "Calls in flight against an upstream, all jobs together" })
const upstreamWaitingKey = MetricKey.gauge("pp_upstream_waiting", { description: "Calls waiting for admission to an upstream" })
const upstreamThrottledKey = MetricKey.counter("pp_upstream_throttled_total", {
  description: "Calls an upstream answered 429",
  incremental: true
})
const upstreamCooldownsKey = MetricKey.counter("pp_upstream_cooldowns_total", {
  description: "Times admission to an upstream was paused because it asked to wait",
  incremental: true
})

/** The metric instances one upstream budget updates, tagged with its key once. */
export interface BudgetMetrics {
  readonly limit: Metric.Metric.Gauge<number>
  readonly inFlight: Metric.Metric.Gauge<number>
  readonly waiting: Metric.Metric.Gauge<number>
  readonly throttled: Counter
  readonly cooldowns: Counter
}

const budgetCache = new Map<string, BudgetMetrics>()

export const forBudget = (upstream: string): BudgetMetrics => {
  const cached = budgetCache.get(upstream)
  if (cached !== undefined) return cached
  const labels: Labels = [["upstream", upstream]]
  const metrics: BudgetMetrics = {
    limit: gaugeWith(upstreamLimitKey, labels),
    inFlight: gaugeWith(upstreamInFlightKey, labels),
    waiting: gaugeWith(upstreamWaitingKey, labels),
    throttled: counterWith(upstreamThrottledKey, labels),
    cooldowns: counterWith(upstreamCooldownsKey, labels)
  }
  budgetCache.set(upstream, metrics)
  return metrics
}
