/**
 * How an upstream `Budget` moves its current limit between 1 and its ceiling, from what the upstream
 * answers: the pluggable part of a budget, like the breaker's open rule.
 *
 * Both algorithms share one answer to push-back (429, 503, an attempt timeout): a multiplicative
 * decrease, at most once per congestion event (calls admitted before the last decrease do not
 * decrease it again), and a memory of the in-flight level where the upstream pushed back. Growth stops
 * just below that level for a hold period, doubled each time a probe above it fails again: with an
 * upstream that answers 429 + `Retry-After` above its capacity every failed probe pauses everyone
 * for the whole `Retry-After`, so probing often costs more than it finds (see `npm run bench:budget`).
 * They differ in how they grow:
 * - `aimd`: slow start (+1 per success) up to the remembered level, then +1 per round trip. Blind to
 *   latency: it finds a limit only by being pushed back.
 * - `gradient` (Netflix concurrency-limits' Gradient2, with the baseline taken as a windowed minimum
 *   of the smoothed latency rather than a long average, which drifts up under sustained load): grows
 *   while the smoothed latency stays within `tolerance` × the baseline, and shrinks in proportion when
 *   it rises above — so it also stops at a latency knee where nothing is ever refused.
 */

/** One finished call, as the budget saw it. */
export interface Sample {
  /** When the call was admitted (ms on the budget's clock). */
  readonly startedAt: number
  readonly now: number
  /** Calls in flight on the budget when this one was admitted, itself included. */
  readonly inFlight: number
  readonly latencyMs: number
}

/** One budget's adaptive state. Mutable: it is updated on every call. */
export interface Estimator {
  /** The current limit, maybe fractional; the budget admits `floor` of it, within [1, ceiling]. */
  readonly limit: () => number
  readonly onSuccess: (sample: Sample) => void
  /** The upstream pushed back: 429, 503 or an attempt timeout. */
  readonly onOverload: (sample: Sample) => void
  /** The ceiling changed (an operator, or the cluster's share): the limit stays within it. */
  readonly setCeiling: (ceiling: number) => void
}

export interface LimitAlgorithm {
  readonly name: string
  readonly make: (ceiling: number, now: number) => Estimator
}

export interface BackoffOptions {
  /** Multiplicative decrease on push-back. Default 0.5. */
  readonly decrease?: number
  /** How long growth stays below the level where the upstream pushed back. Default 5 s. */
  readonly hold?: number
  /** The hold doubles on each failed probe at the same level, up to this. Default 60 s. */
  readonly maxHold?: number
}

/** Push-back handling shared by the algorithms (see the module header). */
class Backoff {
  lastDecreaseAt = Number.NEGATIVE_INFINITY
  /** In-flight level at which the upstream last pushed back. */
  dropLevel = Number.POSITIVE_INFINITY
  probeAt = 0
  hold: number
  constructor(readonly options: Required<BackoffOptions>) {
    this.hold = options.hold
  }
  /** The new limit after push-back on `sample` while the limit was `limit`. */
  onOverload(limit: number, sample: Sample): number {
    if (sample.startedAt < this.lastDecreaseAt) {
      // Admitted before the last decrease: the same congestion event, already answered. It still
      // says the upstream refused at this level.
      this.dropLevel = Math.min(this.dropLevel, sample.inFlight)
      return Math.max(1, Math.min(limit, this.dropLevel - 1))
    }
    const sameLevel = Number.isFinite(this.dropLevel) && sample.inFlight <= this.dropLevel + 1
    this.hold = sameLevel ? Math.min(this.options.maxHold, this.hold * 2) : this.options.hold
    this.dropLevel = sample.inFlight
    this.lastDecreaseAt = sample.now
    this.probeAt = sample.now + this.hold
    return Math.max(1, Math.min(limit * this.options.decrease, sample.inFlight - 1))
  }
  /** Growth stays below the remembered level until the hold is over. */
  cap(limit: number, now: number): number {
    return now < this.probeAt ? Math.min(limit, Math.max(1, this.dropLevel - 1)) : limit
  }
  /** Below this, grow fast (slow start); above it, carefully. */
  threshold(ceiling: number): number {
    return Number.isFinite(this.dropLevel) ? Math.max(1, this.dropLevel - 1) : ceiling
  }
}

const backoffDefaults: Required<BackoffOptions> = { decrease: 0.5, hold: 5_000, maxHold: 60_000 }

/**
 * Where a limit starts: the ceiling when it is modest (the service's defaults are 3–5, and an
 * operator who set one expects it used at once), else 10 (Netflix concurrency-limits starts at 20),
 * growing from there by slow start.
 */
const DEFAULT_INITIAL = 10

const clamp = (n: number, min: number, max: number) => Math.max(min, Math.min(max, n))

/** A call admitted while fewer than half the permits were in use says nothing about the limit. */
const appLimited = (sample: Sample, limit: number) => sample.inFlight < limit / 2

export interface AimdOptions extends BackoffOptions {
  /** Limit to start from. Default min(ceiling, 10); slow start doubles it every round trip. */
  readonly initial?: number
}

/** Additive increase, multiplicative decrease, with slow start (see the module header). */
export const aimd = (options: AimdOptions = {}): LimitAlgorithm => ({
  name: "aimd",
  make: (initialCeiling) => {
    let ceiling = Math.max(1, initialCeiling)
    let limit = clamp(options.initial ?? DEFAULT_INITIAL, 1, ceiling)
    const backoff = new Backoff({ ...backoffDefaults, ...options })
    return {
      limit: () => limit,
      onSuccess: (sample) => {
        if (appLimited(sample, limit)) return
        const step = limit < backoff.threshold(ceiling) ? 1 : 1 / limit
        limit = clamp(backoff.cap(limit + step, sample.now), 1, ceiling)
      },
      onOverload: (sample) => {
        limit = clamp(backoff.onOverload(limit, sample), 1, ceiling)
      },
      setCeiling: (n) => {
        ceiling = Math.max(1, n)
        limit = clamp(limit, 1, ceiling)
      }
    }
  }
})

export interface GradientOptions extends BackoffOptions {
  /** Limit to start from. Default min(ceiling, 10). */
  readonly initial?: number
  /** Latency up to this multiple of the baseline counts as "at baseline". Default 1.2. */
  readonly tolerance?: number
  /** Weight of a new limit estimate against the current one. Default 0.2. */
  readonly smoothing?: number
  /** Weight of a new latency in the smoothed latency. Default 0.1. */
  readonly latencySmoothing?: number
  /** The baseline is the lowest smoothed latency over this window (ms). Default 30 s. */
  readonly baselineWindow?: number
}

/** Gradient2-style: grow while latency stays near its baseline (see the module header). */
export const gradient = (options: GradientOptions = {}): LimitAlgorithm => ({
  name: "gradient",
  make: (initialCeiling) => {
    const tolerance = options.tolerance ?? 1.2
    const smoothing = options.smoothing ?? 0.2
    const alpha = options.latencySmoothing ?? 0.1
    const windowMs = options.baselineWindow ?? 30_000
    const bucketMs = windowMs / 10
    let ceiling = Math.max(1, initialCeiling)
    let limit = clamp(options.initial ?? DEFAULT_INITIAL, 1, ceiling)
    const backoff = new Backoff({ ...backoffDefaults, ...options })
    let smoothed = Number.NaN
    // Windowed minimum of the smoothed latency: ten buckets, the oldest dropped as time moves on.
    const buckets: Array<{ slot: number; min: number }> = []
    const baseline = (now: number): number => {
      const slot = Math.floor(now / bucketMs)
      const last = buckets[buckets.length - 1]
      if (last === undefined || last.slot !== slot) buckets.push({ slot, min: smoothed })
      else last.min = Math.min(last.min, smoothed)
      while (buckets.length > 0 && (buckets[0]?.slot ?? slot) <= slot - 10) buckets.shift()
      let min = Number.POSITIVE_INFINITY
      for (const b of buckets) min = Math.min(min, b.min)
      return min
    }
    return {
      limit: () => limit,
      onSuccess: (sample) => {
        smoothed = Number.isNaN(smoothed) ? sample.latencyMs : smoothed + alpha * (sample.latencyMs - smoothed)
        const base = baseline(sample.now)
        if (appLimited(sample, limit)) return
        const g = smoothed <= 0 ? 1 : clamp((tolerance * base) / smoothed, 0.5, 1)
        // At baseline (g = 1) the estimate grows by one permit, smoothed; above it, it shrinks.
        const estimate = limit * g + (g >= 1 ? (limit < backoff.threshold(ceiling) ? Math.max(1, Math.sqrt(limit)) : 1) : 0)
        const next = limit + smoothing * (estimate - limit)
        limit = clamp(next > limit ? backoff.cap(next, sample.now) : next, 1, ceiling)
      },
      onOverload: (sample) => {
        limit = clamp(backoff.onOverload(limit, sample), 1, ceiling)
      },
      setCeiling: (n) => {
        ceiling = Math.max(1, n)
        limit = clamp(limit, 1, ceiling)
      }
    }
  }
})

/** No adaptation: the limit is the ceiling (`<UPSTREAM>_ADAPTIVE=off`). */
export const fixed: LimitAlgorithm = {
  name: "fixed",
  make: (initialCeiling) => {
    let ceiling = Math.max(1, initialCeiling)
    return {
      limit: () => ceiling,
      onSuccess: () => {},
      onOverload: () => {},
      setCeiling: (n) => {
        ceiling = Math.max(1, n)
      }
    }
  }
}

export const byName = (name: string): LimitAlgorithm | undefined =>
  name === "aimd" ? aimd() : name === "gradient" ? gradient() : name === "fixed" ? fixed : undefined
