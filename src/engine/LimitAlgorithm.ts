/**
 * How an upstream `Budget` moves its current limit between 1 and its ceiling, from what the upstream
 * answers: the pluggable part of a budget, like the breaker's open rule.
 *
 * Both algorithms share one answer to push-back (429, 503, an attempt timeout): a multiplicative
 * decrease, at most once per congestion event (calls admitted before the last decrease do not
 * decrease it again), and a memory of the in-flight level where the upstream pushed back. Growth stops
 * just below that level for a hold period (10 s), doubled each time a probe above it fails again (up to
 * 2 min), and the level is forgotten once a call above it succeeds: with an upstream that answers
 * 429 + `Retry-After` above its capacity every failed probe pauses everyone for the whole
 * `Retry-After`, so probing often costs more than it finds (see `npm run bench:budget`).
 * They differ in how they grow:
 * - `aimd`: slow start (+1 per success) up to the remembered level, then +1 per round trip. Blind to
 *   latency: it finds a limit only by being pushed back.
 * - `gradient` (after Netflix concurrency-limits' Gradient2 in a window of one round trip, with the
 *   baseline measured at low concurrency every 30 s, as Envoy's adaptive concurrency does, rather than
 *   a long average, which drifts up under sustained load): grows while latency stays within `tolerance` × the baseline —
 *   by half per round trip until latency first rises, then one permit per round trip — and shrinks in proportion
 *   when it rises above, so it also stops at a latency knee where nothing is ever refused.
 *
 * Just over 300 lines: the two algorithms share the push-back handling, which stays private here
 * rather than exported for one other module; each algorithm is ~80 lines.
 */

/** One finished call, as the budget saw it. */
export interface Sample {
  /** When the call was admitted (ms on the budget's clock). */
  readonly startedAt: number
  readonly now: number
  /** Calls in flight on the budget when this one was admitted, itself included. */
  readonly inFlight: number
  /** Calls still in flight when this one ended, itself not included. */
  readonly inFlightNow: number
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
  /** How long growth stays below the level where the upstream pushed back. Default 10 s. */
  readonly hold?: number
  /** The hold doubles on each failed probe at the same level, up to this. Default 120 s. */
  readonly maxHold?: number
}

/**
 * Push-back handling shared by the algorithms (see the module header). A congestion event begins with
 * the first push-back after the last decrease and lasts until every call that was in flight then has
 * returned; the calls of it that succeeded are what the upstream was serving of ours when it refused,
 * so the level where it pushed back is one above them. (The in-flight count at which the refused call
 * was admitted says less: the upstream sees a burst's calls in its own order.) Calls admitted before
 * a decrease never make the limit grow: their successes happened at the old level (growing on them
 * during a cooldown made the pause end in a burst above the capacity).
 */
class Backoff {
  lastDecreaseAt = Number.NEGATIVE_INFINITY
  /** In-flight level at which the upstream last pushed back. */
  dropLevel = Number.POSITIVE_INFINITY
  probeAt = 0
  hold: number
  private eventOpen = false
  private pending = 0
  private successes = 0
  private previousLevel = Number.POSITIVE_INFINITY
  constructor(readonly options: Required<BackoffOptions>) {
    this.hold = options.hold
  }
  /** The new limit after push-back on `sample` while the limit was `limit`. */
  onOverload(limit: number, sample: Sample): number {
    if (sample.startedAt < this.lastDecreaseAt) {
      // Admitted before the last decrease: the same congestion event, already answered.
      if (this.pending > 0) this.pending--
      return this.conclude(limit, sample.now)
    }
    this.eventOpen = true
    this.pending = sample.inFlightNow
    this.successes = 0
    this.previousLevel = this.dropLevel
    this.dropLevel = sample.inFlight
    this.lastDecreaseAt = sample.now
    this.probeAt = sample.now + this.hold
    return this.conclude(Math.max(1, Math.min(limit * this.options.decrease, sample.inFlight - 1)), sample.now)
  }
  /** Whether a success may make the limit grow: only calls admitted after the last decrease. */
  mayGrow(sample: Sample): boolean {
    return sample.startedAt >= this.lastDecreaseAt && !this.eventOpen
  }
  /** A call succeeded: part of a congestion event, or a probe above the remembered level. */
  onSuccess(limit: number, sample: Sample): number {
    if (sample.startedAt < this.lastDecreaseAt && this.pending > 0) {
      this.pending--
      this.successes++
      return this.conclude(limit, sample.now)
    }
    if (!this.eventOpen && sample.inFlight > this.dropLevel && sample.startedAt >= this.probeAt) {
      // A call above the remembered level succeeded: the upstream takes more now; forget the level.
      this.dropLevel = Number.POSITIVE_INFINITY
      this.hold = this.options.hold
    }
    return limit
  }
  /** Once every call of the event has returned: the level is one above what the upstream took. */
  private conclude(limit: number, now: number): number {
    if (!this.eventOpen || this.pending > 0) return limit
    this.eventOpen = false
    // What the upstream was serving of ours when it refused: it took that many, and no more.
    this.dropLevel = this.successes + 1
    const sameLevel = Number.isFinite(this.previousLevel) && this.dropLevel <= this.previousLevel + 1
    this.hold = sameLevel ? Math.min(this.options.maxHold, this.hold * 2) : this.options.hold
    this.probeAt = now + this.hold
    // Those calls went through together: that many is safe.
    return Math.max(1, Math.min(Math.max(limit, this.successes), this.dropLevel - 1))
  }
  /** Growth stays below the remembered level until the hold is over. */
  cap(limit: number, now: number): number {
    return now < this.probeAt ? Math.min(limit, Math.max(1, this.dropLevel - 1)) : limit
  }
  /** Below this, grow fast (slow start); above it, one permit per round trip. */
  threshold(ceiling: number): number {
    return Number.isFinite(this.dropLevel) ? Math.max(1, this.dropLevel - 1) : ceiling
  }
}

const SLOW_START_EXIT = 1.05

const backoffDefaults: Required<BackoffOptions> = { decrease: 0.5, hold: 10_000, maxHold: 120_000 }

/**
 * Where a limit starts: the upper end of the guide's recommended concurrencies (3–5), so the service's
 * default ceilings are used at once; low enough that the gradient's first baseline is close to the
 * unloaded latency. Slow start grows it from there.
 */
const DEFAULT_INITIAL = 5

const clamp = (n: number, min: number, max: number) => Math.max(min, Math.min(max, n))

/** A call admitted while fewer than half the permits were in use says nothing about the limit. */
const appLimited = (inFlight: number, limit: number) => inFlight < limit / 2

export interface AimdOptions extends BackoffOptions {
  /** Limit to start from. Default min(ceiling, 5); slow start doubles it every round trip. */
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
        limit = clamp(backoff.onSuccess(limit, sample), 1, ceiling)
        if (!backoff.mayGrow(sample) || appLimited(sample.inFlight, limit)) return
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
  /** Limit to start from. Default min(ceiling, 5). */
  readonly initial?: number
  /** Latency up to this multiple of the baseline counts as "at baseline". Default 1.2. */
  readonly tolerance?: number
  /** Fewest calls in a window (one limit update). Default 8. */
  readonly minWindow?: number
  /** How often the baseline is measured again at low concurrency (ms). Default 30 s. */
  readonly baselineInterval?: number
}

/**
 * Gradient2-style: grow while latency stays near its baseline (see the module header).
 *
 * - Samples are taken in windows of about one round trip (as many calls as the limit, at least 8,
 *   all admitted since the window began, so at the current limit) and the limit moves once per
 *   window. Updating on every sample swung between 1 and 26 at a knee of 8, and a baseline taken as
 *   the lowest window of a few calls sat so far below a noisy upstream's typical latency that the
 *   limit fell to 1 against a healthy one (a lognormal σ 0.35 upstream, simulated: 1 instead of 32).
 * - The baseline is the unloaded latency, measured like Envoy's adaptive concurrency measures its
 *   minimum RTT: at the start and every `baselineInterval`, the limit is held at a quarter of itself
 *   (at least 2) for 16 calls. A baseline kept from loaded latency drifts up with the load (Gradient2's
 *   long average, or a sliding minimum once the window has seen only loaded calls: in a 10-minute
 *   simulation at a knee of 8 it drifted to the ceiling).
 */
export const gradient = (options: GradientOptions = {}): LimitAlgorithm => ({
  name: "gradient",
  make: (initialCeiling, startedAt) => {
    const tolerance = options.tolerance ?? 1.2
    const minWindow = Math.max(1, options.minWindow ?? 8)
    const interval = options.baselineInterval ?? 30_000
    let ceiling = Math.max(1, initialCeiling)
    let limit = clamp(options.initial ?? DEFAULT_INITIAL, 1, ceiling)
    const backoff = new Backoff({ ...backoffDefaults, ...options })
    // Slow start until latency first rises above the baseline (or the upstream pushes back).
    let slowStart = true
    let window = { start: startedAt, count: 0, sum: 0, maxInFlight: 0 }
    let base = Number.NaN
    // A baseline measurement in progress: calls admitted at or below `level` since `since`.
    let measuring: { since: number; level: number; count: number; sum: number } | undefined = {
      since: startedAt,
      level: Math.floor(limit),
      count: 0,
      sum: 0
    }
    let nextMeasureAt = startedAt + interval
    const measureLevel = () => Math.min(Math.floor(limit), Math.max(2, Math.ceil(limit / 4)))
    return {
      limit: () => (measuring === undefined ? limit : Math.min(limit, Math.max(1, measuring.level))),
      onSuccess: (sample) => {
        limit = clamp(backoff.onSuccess(limit, sample), 1, ceiling)
        if (!backoff.mayGrow(sample)) return
        if (measuring !== undefined) {
          if (sample.startedAt >= measuring.since && sample.inFlight <= measuring.level) {
            measuring.count++
            measuring.sum += sample.latencyMs
          }
          const enough = measuring.count >= 2 * minWindow || (measuring.count >= 4 && sample.now - measuring.since > 3_000)
          if (!enough) return
          base = measuring.sum / measuring.count
          measuring = undefined
          nextMeasureAt = sample.now + interval
          window = { start: sample.now, count: 0, sum: 0, maxInFlight: 0 }
          return
        }
        if (sample.now >= nextMeasureAt) {
          measuring = { since: sample.now, level: measureLevel(), count: 0, sum: 0 }
          return
        }
        // A window measures the latency at the current limit: calls admitted before it began were
        // admitted at another level (counting them made the limit answer a round trip late and swing).
        if (sample.startedAt < window.start) return
        window.count++
        window.sum += sample.latencyMs
        window.maxInFlight = Math.max(window.maxInFlight, sample.inFlight)
        if (window.count < Math.max(minWindow, Math.floor(limit)) && sample.now - window.start < 5_000) return
        const latency = window.sum / window.count
        const busy = !appLimited(window.maxInFlight, limit)
        window = { start: sample.now, count: 0, sum: 0, maxInFlight: 0 }
        if (!busy || Number.isNaN(base)) return
        const g = latency <= 0 ? 1 : clamp((tolerance * base) / latency, 0.5, 1)
        if (g < 1) {
          slowStart = false
          limit = clamp(limit * g, 1, ceiling)
          return
        }
        // Slow start ends at the first rise in latency, however small: growing by half per round trip,
        // it then overshoots a knee by at most half of the last level that showed none.
        if (latency > SLOW_START_EXIT * base) slowStart = false
        const fast = slowStart && limit < backoff.threshold(ceiling)
        limit = clamp(backoff.cap(fast ? limit * 1.5 : limit + 1, sample.now), 1, ceiling)
      },
      onOverload: (sample) => {
        slowStart = false
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
