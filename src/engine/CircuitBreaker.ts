/**
 * A circuit breaker per upstream key: stops hammering an upstream that keeps failing, lets a bounded
 * number of probes through after a recovery time, and closes again when a probe succeeds.
 *
 * The state is a tagged union in a `Ref`; the decision *when to open* is a pluggable `OpenRule`
 * (consecutive failures, failure rate over a time window, or both). Only failures that say "the
 * upstream is unhealthy" (transient, timeout) count; callers report each outcome through `release`.
 */
import { Cause, Clock, Duration, Effect, Exit, Metric, Option, PubSub, Ref, Stream } from "effect"
import { dual } from "effect/Function"
import { CircuitOpen } from "./Errors.js"
import * as EngineMetrics from "./EngineMetrics.js"

// ---------------------------------------------------------------------------------------------
// When to open
// ---------------------------------------------------------------------------------------------

/**
 * What a rule remembers while the breaker is closed. Immutable: each outcome returns the next state,
 * so the breaker can keep it inside its `Ref`.
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

/** Open after `threshold` failures in a row; a success resets the count. */
export const consecutiveFailures = (threshold: number): OpenRule => {
  const at = (failures: number): RuleState => ({
    onSuccess: () => zero,
    onFailure: () => ({ state: at(failures + 1), open: failures + 1 >= threshold })
  })
  const zero = at(0)
  return { description: `${threshold} consecutive failures`, initial: () => zero }
}

interface Bucket {
  readonly slot: number
  readonly calls: number
  readonly failures: number
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
  const bucketMs = Math.max(1, Duration.toMillis(options.window) / buckets)
  const record = (state: ReadonlyArray<Bucket>, now: number, failed: boolean): Array<Bucket> => {
    const slot = Math.floor(now / bucketMs)
    const kept = state.filter((b) => b.slot > slot - buckets)
    const last = kept[kept.length - 1]
    if (last !== undefined && last.slot === slot) {
      kept[kept.length - 1] = { slot, calls: last.calls + 1, failures: last.failures + (failed ? 1 : 0) }
    } else {
      kept.push({ slot, calls: 1, failures: failed ? 1 : 0 })
    }
    return kept
  }
  const of = (window: ReadonlyArray<Bucket>): RuleState => ({
    onSuccess: (now) => of(record(window, now, false)),
    onFailure: (now) => {
      const next = record(window, now, true)
      let calls = 0
      let failures = 0
      for (const b of next) {
        calls += b.calls
        failures += b.failures
      }
      return { state: of(next), open: calls >= options.minimumCalls && failures / calls >= options.threshold }
    }
  })
  return {
    description: `failure rate >= ${options.threshold} over ${Duration.format(options.window)} (min ${options.minimumCalls} calls)`,
    initial: () => of([])
  }
}

/** Open when either rule says so. */
export const either = (a: OpenRule, b: OpenRule): OpenRule => {
  const pair = (sa: RuleState, sb: RuleState): RuleState => ({
    onSuccess: (now) => pair(sa.onSuccess(now), sb.onSuccess(now)),
    onFailure: (now) => {
      const ra = sa.onFailure(now)
      const rb = sb.onFailure(now)
      return { state: pair(ra.state, rb.state), open: ra.open || rb.open }
    }
  })
  return {
    description: `${a.description} or ${b.description}`,
    initial: (now) => pair(a.initial(now), b.initial(now))
  }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

export type BreakerStatus = "closed" | "open" | "half_open"

/** `generation` changes on every transition, so outcomes of calls admitted in an earlier state are ignored. */
export type BreakerState =
  | { readonly _tag: "Closed"; readonly generation: number; readonly since: number; readonly rule: RuleState }
  | { readonly _tag: "Open"; readonly generation: number; readonly since: number; readonly until: number }
  | { readonly _tag: "HalfOpen"; readonly generation: number; readonly since: number; readonly probes: number }

export interface Settings {
  /** When to open. Default: 3 consecutive failures, or ≥ 50% failures over 60 s with ≥ 20 calls. */
  readonly rule: OpenRule
  /** How long the breaker stays open before letting probes through. Default 60 s. */
  readonly recoveryTimeout: Duration.DurationInput
  /** Calls admitted at once while half-open. Default 1. */
  readonly halfOpenProbes: number
  /** The wait suggested to callers turned away while half-open (probes busy). Default 1 s. */
  readonly halfOpenRetryAfter: Duration.DurationInput
}

export const defaultSettings: Settings = {
  rule: either(consecutiveFailures(3), failureRate({ threshold: 0.5, minimumCalls: 20, window: "60 seconds" })),
  recoveryTimeout: "60 seconds",
  halfOpenProbes: 1,
  halfOpenRetryAfter: "1 second"
}

/** A call admitted by the breaker; hand it back to `release` with the call's outcome. */
export interface Permit {
  readonly probe: boolean
  readonly generation: number
}

/** `failure`: counts against the upstream. `neutral`: says nothing about its health (4xx, 429, interrupted). */
export type Outcome = "success" | "failure" | "neutral"

export interface Transition {
  readonly key: string
  readonly from: BreakerStatus
  readonly to: BreakerStatus
  readonly at: number
}

export interface Snapshot {
  readonly key: string
  readonly status: BreakerStatus
  /** When the current state began (epoch ms). */
  readonly since: number
  /** While open: how long until probes are let through. */
  readonly retryAfterMs?: number
  readonly probesInFlight: number
}

export interface CircuitBreaker {
  readonly key: string
  /** Admit a call, or fail fast with `CircuitOpen`. */
  readonly acquire: Effect.Effect<Permit, CircuitOpen>
  /** Report the outcome of an admitted call. Must be called exactly once per permit. */
  readonly release: (permit: Permit, outcome: Outcome) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<Snapshot>
  /** State changes from now on. */
  readonly changes: Stream.Stream<Transition>
}

const statusOf = (tag: BreakerState["_tag"]): BreakerStatus =>
  tag === "Closed" ? "closed" : tag === "Open" ? "open" : "half_open"

const statusGauge = (status: BreakerStatus): number => (status === "closed" ? 0 : status === "half_open" ? 1 : 2)

type Decision = { readonly permit: Permit } | { readonly rejectMs: number }

/**
 * Build a breaker that publishes its transitions to `transitions`. The registry shares one PubSub
 * between all its breakers.
 */
export const makeWith = (
  key: string,
  settings: Settings,
  transitions: PubSub.PubSub<Transition>
): Effect.Effect<CircuitBreaker> =>
  Effect.gen(function* () {
    const rule = settings.rule
    const recoveryMs = Duration.toMillis(settings.recoveryTimeout)
    const halfOpenRetryMs = Duration.toMillis(settings.halfOpenRetryAfter)
    const maxProbes = Math.max(1, settings.halfOpenProbes)
    const now0 = yield* Clock.currentTimeMillis
    const ref = yield* Ref.make<BreakerState>({ _tag: "Closed", generation: 0, since: now0, rule: rule.initial(now0) })
    const gauge = EngineMetrics.breakerState.pipe(Metric.tagged("key", key))
    const transitionCounter = (to: BreakerStatus) =>
      EngineMetrics.breakerTransitions.pipe(Metric.tagged("key", key), Metric.tagged("to", to))
    yield* Metric.set(gauge, 0)

    const announce = (from: BreakerStatus, to: BreakerStatus, at: number): Effect.Effect<void> =>
      Effect.all(
        [
          Metric.set(gauge, statusGauge(to)),
          Metric.increment(transitionCounter(to)),
          PubSub.publish(transitions, { key, from, to, at }),
          to === "open"
            ? Effect.logWarning(`circuit breaker ${key} opened`)
            : Effect.logInfo(`circuit breaker ${key} ${to === "closed" ? "closed" : "half-open"}`)
        ],
        { discard: true }
      ).pipe(Effect.annotateLogs({ breaker: key, from, to }))

    const acquire: Effect.Effect<Permit, CircuitOpen> = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.flatMap(
        Ref.modify(ref, (s): readonly [readonly [Decision, BreakerStatus | undefined], BreakerState] => {
          switch (s._tag) {
            case "Closed":
              return [[{ permit: { probe: false, generation: s.generation } }, undefined], s]
            case "Open":
              if (now < s.until) return [[{ rejectMs: s.until - now }, undefined], s]
              return [
                [{ permit: { probe: true, generation: s.generation + 1 } }, "open"],
                { _tag: "HalfOpen", generation: s.generation + 1, since: now, probes: 1 }
              ]
            case "HalfOpen":
              if (s.probes >= maxProbes) return [[{ rejectMs: halfOpenRetryMs }, undefined], s]
              return [[{ permit: { probe: true, generation: s.generation } }, undefined], { ...s, probes: s.probes + 1 }]
          }
        }),
        ([decision, from]) => {
          if ("permit" in decision) {
            return from === undefined
              ? Effect.succeed(decision.permit)
              : Effect.as(announce(from, "half_open", now), decision.permit)
          }
          return Effect.fail(
            new CircuitOpen({
              key,
              retryAfter: Duration.millis(decision.rejectMs),
              message: `circuit breaker for ${key} is open; retry in ${Math.ceil(decision.rejectMs / 1000)} s`
            })
          )
        }
      )
    )

    const release = (permit: Permit, outcome: Outcome): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(
          Ref.modify(ref, (s): readonly [BreakerStatus | undefined, BreakerState] => {
            if (s.generation !== permit.generation) return [undefined, s]
            switch (s._tag) {
              case "Closed": {
                if (outcome === "neutral") return [undefined, s]
                if (outcome === "success") return [undefined, { ...s, rule: s.rule.onSuccess(now) }]
                const r = s.rule.onFailure(now)
                if (!r.open) return [undefined, { ...s, rule: r.state }]
                return ["closed", { _tag: "Open", generation: s.generation + 1, since: now, until: now + recoveryMs }]
              }
              case "HalfOpen": {
                if (!permit.probe) return [undefined, s]
                if (outcome === "neutral") return [undefined, { ...s, probes: Math.max(0, s.probes - 1) }]
                if (outcome === "success") {
                  return [
                    "half_open",
                    { _tag: "Closed", generation: s.generation + 1, since: now, rule: rule.initial(now) }
                  ]
                }
                return ["half_open", { _tag: "Open", generation: s.generation + 1, since: now, until: now + recoveryMs }]
              }
              case "Open":
                return [undefined, s]
            }
          }),
          (from) => {
            if (from === undefined) return Effect.void
            return Effect.flatMap(Ref.get(ref), (s) => announce(from, statusOf(s._tag), now))
          }
        )
      )

    const snapshot: Effect.Effect<Snapshot> = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(Ref.get(ref), (s): Snapshot => {
        const base = { key, status: statusOf(s._tag), since: s.since }
        switch (s._tag) {
          case "Closed":
            return { ...base, probesInFlight: 0 }
          case "Open":
            return { ...base, probesInFlight: 0, retryAfterMs: Math.max(0, s.until - now) }
          case "HalfOpen":
            return { ...base, probesInFlight: s.probes }
        }
      })
    )

    return {
      key,
      acquire,
      release,
      snapshot,
      changes: Stream.fromPubSub(transitions).pipe(Stream.filter((t) => t.key === key))
    }
  })

/** A standalone breaker with its own transition stream. */
export const make = (key: string, settings: Partial<Settings> = {}): Effect.Effect<CircuitBreaker> =>
  Effect.flatMap(PubSub.unbounded<Transition>(), (pubsub) => makeWith(key, { ...defaultSettings, ...settings }, pubsub))

/**
 * Run `self` through the breaker: fail fast with `CircuitOpen` while it is open, and report the
 * outcome. `isFailure` says which errors count against the upstream (default: all of them);
 * interruption never counts.
 */
export const withCircuitBreaker: {
  <E>(
    breaker: CircuitBreaker,
    options?: { readonly isFailure?: (error: E) => boolean }
  ): <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R>
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    breaker: CircuitBreaker,
    options?: { readonly isFailure?: (error: E) => boolean }
  ): Effect.Effect<A, E | CircuitOpen, R>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    breaker: CircuitBreaker,
    options?: { readonly isFailure?: (error: E) => boolean }
  ): Effect.Effect<A, E | CircuitOpen, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(breaker.acquire, (permit) =>
        restore(self).pipe(
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return breaker.release(permit, "success")
            // An interruption says nothing about the upstream; a defect counts against it.
            if (Cause.isInterruptedOnly(exit.cause)) return breaker.release(permit, "neutral")
            const failure = Cause.failureOption(exit.cause)
            const counts = Option.isNone(failure) || (options?.isFailure ? options.isFailure(failure.value) : true)
            return breaker.release(permit, counts ? "failure" : "neutral")
          })
        )
      )
    )
)
