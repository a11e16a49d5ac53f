/**
 * When a circuit breaker opens: the pluggable `OpenRule`s (consecutive failures, failure rate over a
 * sliding window, either of two), re-exported by `CircuitBreaker`. A rule only sees the outcomes
 * recorded while the breaker is closed.
 */
import { Duration } from "effect"

/**
 * What a rule remembers while the breaker is closed. Each outcome returns the next state; the breaker
 * holds the only reference to the current one, so a state may also update itself and return itself
 * (the built-in rules do, for the outcome recorded on every call).
 */
export interface RuleState {
  readonly onSuccess: (now: number) => RuleState
  readonly onFailure: (now: number) => { readonly state: RuleState; readonly open: boolean }
}

/** Decides, from the outcomes seen while closed, when the breaker must open. */
export interface OpenRule {
  readonly description: string
  readonly initial: (now: number) => RuleState
}

// Rule states are small classes rather than object literals of closures, and methods on a
// prototype cost nothing to create.

class Consecutive implements RuleState {
  constructor(
    readonly failures: number,
    readonly threshold: number,
    readonly zero: Consecutive | undefined
  ) {}
  onSuccess(): RuleState {
    return this.zero ?? this
  }
  onFailure() {
    const failures = this.failures + 1
    return { state: new Consecutive(failures, this.threshold, this.zero ?? this), open: failures >= this.threshold }
  }
}

/** Open after `threshold` failures in a row; a success resets the count. */
export const consecutiveFailures = (threshold: number): OpenRule => {
  const zero = new Consecutive(0, threshold, undefined)
  return { description: `${threshold} consecutive failures`, initial: () => zero }
}

interface Bucket {
  readonly slot: number
  readonly calls: number
  readonly failures: number
}

interface RateSettings {
  readonly threshold: number
  readonly minimumCalls: number
  readonly buckets: number
  readonly bucketMs: number
}

// The current bucket's counts are fields of the state itself, apart from the older buckets, and are
// counted in place: recording an outcome in the current bucket allocates nothing (a new state per
// outcome was the largest single cost of an immediate call through the breaker).
class Rate implements RuleState {
  constructor(
    readonly settings: RateSettings,
    readonly slot: number,
    private calls: number,
    private failures: number,
    readonly older: ReadonlyArray<Bucket>
  ) {}
  private advance(now: number, failed: boolean): Rate {
    const { bucketMs, buckets } = this.settings
    const slot = Math.floor(now / bucketMs)
    const add = failed ? 1 : 0
    if (slot === this.slot) {
      this.calls++
      this.failures += add
      return this
    }
    const kept = [...this.older, { slot: this.slot, calls: this.calls, failures: this.failures }].filter(
      (b) => b.slot > slot - buckets && b.calls > 0
    )
    return new Rate(this.settings, slot, 1, add, kept)
  }
  onSuccess(now: number): RuleState {
    return this.advance(now, false)
  }
  onFailure(now: number) {
    const next = this.advance(now, true)
    let calls = next.calls
    let failures = next.failures
    for (const b of next.older) {
      calls += b.calls
      failures += b.failures
    }
    return { state: next, open: calls >= this.settings.minimumCalls && failures / calls >= this.settings.threshold }
  }
}

/**
 * Open when, over the last `window`, at least `minimumCalls` outcomes were seen and the share of
 * failures reached `threshold` (0–1). The window slides in `buckets` steps.
 */
export const failureRate = (options: {
  readonly threshold: number
  readonly minimumCalls: number
  readonly window: Duration.DurationInput
  readonly buckets?: number
}): OpenRule => {
  const buckets = Math.max(1, options.buckets ?? 10)
  const settings: RateSettings = {
    threshold: options.threshold,
    minimumCalls: options.minimumCalls,
    buckets,
    bucketMs: Math.max(1, Duration.toMillis(options.window) / buckets)
  }
  return {
    description: `failure rate >= ${options.threshold} over ${Duration.format(options.window)} (min ${options.minimumCalls} calls)`,
    initial: (now) => new Rate(settings, Math.floor(now / settings.bucketMs), 0, 0, [])
  }
}

class Either implements RuleState {
  constructor(
    readonly a: RuleState,
    readonly b: RuleState
  ) {}
  onSuccess(now: number): RuleState {
    const a = this.a.onSuccess(now)
    const b = this.b.onSuccess(now)
    return a === this.a && b === this.b ? this : new Either(a, b)
  }
  onFailure(now: number) {
    const ra = this.a.onFailure(now)
    const rb = this.b.onFailure(now)
    return { state: new Either(ra.state, rb.state), open: ra.open || rb.open }
  }
}

/** Open when either rule says so. */
export const either = (a: OpenRule, b: OpenRule): OpenRule => ({
  description: `${a.description} or ${b.description}`,
  initial: (now) => new Either(a.initial(now), b.initial(now))
})
