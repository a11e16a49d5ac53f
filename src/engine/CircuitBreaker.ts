/**
 * A circuit breaker per upstream key: stops hammering an upstream that keeps failing, lets a bounded
 * number of probes through after a recovery time, and closes again when a probe succeeds.
 *
 * The state is a tagged union held by the breaker (every change is one synchronous step, so no `Ref`
 * is needed, and the engine can admit and report without running an effect while it is closed —
 * `tryAcquireNow`/`releaseNow`); the decision *when to open* is a pluggable `OpenRule`
 * (consecutive failures, failure rate over a time window, or both). Only failures that say "the
 * upstream is unhealthy" (transient, timeout) count; callers report each outcome through `release`.
 *
 * The open rules live in internal/breakerRules.ts (re-exported here). What is left, ~350 lines, is
 * the breaker's public types and one state machine (`makeWith`), kept together.
 */
import { Cause, Clock, Duration, Effect, Exit, Metric, Option, PubSub, type Scope, Stream } from "effect"
import { dual } from "effect/Function"
import { CircuitOpen } from "./Errors.js"
import * as EngineMetrics from "./EngineMetrics.js"

export {
  consecutiveFailures,
  either,
  failureRate,
  type OpenRule,
  type RuleState
} from "./internal/breakerRules.js"
import { consecutiveFailures, either, failureRate, type OpenRule, type RuleState } from "./internal/breakerRules.js"

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
  /** Set by `override`: the change came from outside (e.g. the cluster), not from this breaker's calls. */
  readonly external?: boolean
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
  /**
   * Report the outcome of an admitted call. Must be called exactly once per permit. `at` (epoch ms
   * on the breaker's clock) saves a clock read when the caller already has one.
   */
  readonly release: (permit: Permit, outcome: Outcome, at?: number) => Effect.Effect<void>
  /**
   * `acquire` without running an effect, for the engine's per-attempt path: the permit while the
   * breaker is closed (which changes nothing), else `undefined` — then use `acquire`.
   */
  readonly tryAcquireNow: () => Permit | undefined
  /**
   * `release` applied at once; the returned effect announces the transition it caused, and is
   * `Effect.void` itself when there was none (the common case, which then costs no effect).
   */
  readonly releaseNow: (permit: Permit, outcome: Outcome, at?: number) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<Snapshot>
  /** State changes from whenever the stream starts running. */
  readonly changes: Stream.Stream<Transition>
  /** State changes from this moment on (subscribed before it returns), for as long as the scope lasts. */
  readonly subscribe: Effect.Effect<Stream.Stream<Transition>, never, Scope.Scope>
  /**
   * Set the state from outside — e.g. the cluster-wide view of an upstream: open until exactly
   * `until` (epoch ms), closed, or `Probe`: the next call goes through as this breaker's one probe.
   * `Probe` leaves a probe already in flight alone (decided in the same step as the state it reads,
   * so a caller that looked at `snapshot` a round trip ago cannot let a second probe through).
   * Calls admitted before an `Open` or `Closed` are ignored when they report (new generation).
   */
  readonly override: (to: Override) => Effect.Effect<void>
  /** While open: until when (epoch ms). */
  readonly openUntil: Effect.Effect<number | undefined>
}

export type Override =
  | { readonly _tag: "Open"; readonly until: number }
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Probe" }

const statusOf = (tag: BreakerState["_tag"]): BreakerStatus =>
  tag === "Closed" ? "closed" : tag === "Open" ? "open" : "half_open"

const statusGauge = (status: BreakerStatus): number => (status === "closed" ? 0 : status === "half_open" ? 1 : 2)

type Decision =
  | Permit
  | { readonly rejectMs: number }
  | { readonly permit: Permit; readonly from: BreakerStatus; readonly at: number }

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
    let state: BreakerState = { _tag: "Closed", generation: 0, since: now0, rule: rule.initial(now0) }
    /** Applies a `Ref.modify`-style step to the state at once. */
    const modify = <B>(f: (s: BreakerState) => readonly [B, BreakerState]): B => {
      const [b, next] = f(state)
      state = next
      return b
    }
    const gauge = EngineMetrics.breakerState(key)
    const transitionCounter = (to: BreakerStatus) => EngineMetrics.breakerTransitions(key, to)
    yield* Metric.set(gauge, 0)

    const announce = (from: BreakerStatus, to: BreakerStatus, at: number, external = false): Effect.Effect<void> =>
      Effect.all(
        [
          Metric.set(gauge, statusGauge(to)),
          Metric.increment(transitionCounter(to)),
          PubSub.publish(transitions, external ? { key, from, to, at, external } : { key, from, to, at }),
          to === "open"
            ? Effect.logWarning(`circuit breaker ${key} opened${external ? " (shared state)" : ""}`)
            : Effect.logInfo(`circuit breaker ${key} ${to === "closed" ? "closed" : "half-open"}${external ? " (shared state)" : ""}`)
        ],
        { discard: true }
      ).pipe(Effect.annotateLogs({ breaker: key, from, to }))

    // The clock is captured once: acquire/release run on every attempt, and looking the clock up
    // in the fiber's context each time cost more than the state change itself.
    const clock = yield* Effect.clock
    const closedPermits = new Map<number, Permit>()
    const closedPermit = (generation: number): Permit => {
      let permit = closedPermits.get(generation)
      if (permit === undefined) {
        closedPermits.clear()
        permit = { probe: false, generation }
        closedPermits.set(generation, permit)
      }
      return permit
    }

    const reject = (ms: number) =>
      new CircuitOpen({
        key,
        retryAfter: Duration.millis(ms),
        message: `circuit breaker for ${key} is open; retry in ${Math.ceil(ms / 1000)} s`
      })

    const acquire: Effect.Effect<Permit, CircuitOpen> = Effect.suspend(() => {
      const decision = modify((s): readonly [Decision, BreakerState] => {
        switch (s._tag) {
          case "Closed":
            return [closedPermit(s.generation), s]
          case "Open": {
            const now = clock.unsafeCurrentTimeMillis()
            if (now < s.until) return [{ rejectMs: s.until - now }, s]
            const permit = { probe: true, generation: s.generation + 1 }
            return [{ permit, from: "open", at: now }, { _tag: "HalfOpen", generation: permit.generation, since: now, probes: 1 }]
          }
          case "HalfOpen":
            if (s.probes >= maxProbes) return [{ rejectMs: halfOpenRetryMs }, s]
            return [{ probe: true, generation: s.generation }, { ...s, probes: s.probes + 1 }]
        }
      })
      if ("generation" in decision) return Effect.succeed(decision)
      if ("rejectMs" in decision) return Effect.fail(reject(decision.rejectMs))
      return Effect.as(announce(decision.from, "half_open", decision.at), decision.permit)
    })

    const tryAcquireNow = (): Permit | undefined => (state._tag === "Closed" ? closedPermit(state.generation) : undefined)

    const releaseNow = (permit: Permit, outcome: Outcome, at?: number): Effect.Effect<void> => {
      const current = state
      if (current._tag === "Closed" && outcome === "success" && current.generation === permit.generation) {
        // The common case, without the tuple of the general step.
        const next = current.rule.onSuccess(at ?? clock.unsafeCurrentTimeMillis())
        if (next !== current.rule) state = { _tag: "Closed", generation: current.generation, since: current.since, rule: next }
        return Effect.void
      }
      const transition = modify((s): readonly [Transition | undefined, BreakerState] => {
          if (s.generation !== permit.generation) return [undefined, s]
          switch (s._tag) {
            case "Closed": {
              if (outcome === "neutral") return [undefined, s]
              const now = at ?? clock.unsafeCurrentTimeMillis()
              if (outcome === "success") {
                const rule = s.rule.onSuccess(now)
                return [
                  undefined,
                  rule === s.rule ? s : { _tag: "Closed", generation: s.generation, since: s.since, rule }
                ]
              }
              const r = s.rule.onFailure(now)
              if (!r.open) return [undefined, { _tag: "Closed", generation: s.generation, since: s.since, rule: r.state }]
              return [
                { key, from: "closed", to: "open", at: now },
                { _tag: "Open", generation: s.generation + 1, since: now, until: now + recoveryMs }
              ]
            }
            case "HalfOpen": {
              if (!permit.probe) return [undefined, s]
              if (outcome === "neutral") return [undefined, { ...s, probes: Math.max(0, s.probes - 1) }]
              const now = at ?? clock.unsafeCurrentTimeMillis()
              if (outcome === "success") {
                return [
                  { key, from: "half_open", to: "closed", at: now },
                  { _tag: "Closed", generation: s.generation + 1, since: now, rule: rule.initial(now) }
                ]
              }
              return [
                { key, from: "half_open", to: "open", at: now },
                { _tag: "Open", generation: s.generation + 1, since: now, until: now + recoveryMs }
              ]
            }
            case "Open":
              return [undefined, s]
          }
        })
      return transition === undefined ? Effect.void : announce(transition.from, transition.to, transition.at)
    }

    const release = (permit: Permit, outcome: Outcome, at?: number): Effect.Effect<void> =>
      Effect.suspend(() => releaseNow(permit, outcome, at))

    const snapshot: Effect.Effect<Snapshot> = Effect.sync((): Snapshot => {
        const s = state
        const now = clock.unsafeCurrentTimeMillis()
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

    const override = (to: Override) =>
      Effect.suspend(() => {
        const transition = modify((s): readonly [Transition | undefined, BreakerState] => {
          const now = clock.unsafeCurrentTimeMillis()
          if (to._tag === "Probe") {
            // A probe in flight, or a deadline already past, is already "the next call probes".
            if (s._tag === "HalfOpen" || (s._tag === "Open" && s.until <= now)) return [undefined, s]
            const next: BreakerState = { _tag: "Open", generation: s.generation + 1, since: s._tag === "Open" ? s.since : now, until: now }
            return [s._tag === "Open" ? undefined : { key, from: statusOf(s._tag), to: "open", at: now }, next]
          }
          if (to._tag === "Open") {
            if (s._tag === "Open" && s.until === to.until) return [undefined, s]
            const next: BreakerState = { _tag: "Open", generation: s.generation + 1, since: s._tag === "Open" ? s.since : now, until: to.until }
            return [s._tag === "Open" ? undefined : { key, from: statusOf(s._tag), to: "open", at: now }, next]
          }
          if (s._tag === "Closed") return [undefined, s]
          return [
            { key, from: statusOf(s._tag), to: "closed", at: now },
            { _tag: "Closed", generation: s.generation + 1, since: now, rule: rule.initial(now) }
          ]
        })
        return transition === undefined ? Effect.void : announce(transition.from, transition.to, transition.at, true)
      })

    return {
      key,
      acquire,
      release,
      tryAcquireNow,
      releaseNow,
      snapshot,
      override,
      openUntil: Effect.sync(() => (state._tag === "Open" ? state.until : undefined)),
      changes: Stream.fromPubSub(transitions).pipe(Stream.filter((t) => t.key === key)),
      subscribe: Effect.map(PubSub.subscribe(transitions), (queue) =>
        Stream.fromQueue(queue).pipe(Stream.filter((t) => t.key === key))
      )
    }
  })

/** A standalone breaker with its own transition stream. */
export const make = (key: string, settings: Partial<Settings> = {}): Effect.Effect<CircuitBreaker> =>
  Effect.flatMap(PubSub.unbounded<Transition>(), (pubsub) => makeWith(key, { ...defaultSettings, ...settings }, pubsub))

export interface GuardOptions<E> {
  /** Which errors count against the upstream. Default: all of them. */
  readonly isFailure?: (error: E) => boolean
  /**
   * Asked when the call is interrupted: `true` counts it as a failure (it was cut by a timeout).
   * Default: interruptions never count. Inside an engine task, pass the attempt's `timedOut`.
   */
  readonly interruptionIsFailure?: () => boolean
}

/**
 * Run `self` through the breaker: fail fast with `CircuitOpen` while it is open, and report the
 * outcome (see `GuardOptions`).
 */
export const withCircuitBreaker: {
  <E>(breaker: CircuitBreaker, options?: GuardOptions<E>): <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, breaker: CircuitBreaker, options?: GuardOptions<E>): Effect.Effect<A, E | CircuitOpen, R>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(self: Effect.Effect<A, E, R>, breaker: CircuitBreaker, options?: GuardOptions<E>): Effect.Effect<A, E | CircuitOpen, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(breaker.acquire, (permit) =>
        restore(self).pipe(
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return breaker.release(permit, "success")
            // A cancel says nothing about the upstream; a timeout and a defect count against it.
            if (Cause.isInterruptedOnly(exit.cause)) {
              return breaker.release(permit, options?.interruptionIsFailure?.() === true ? "failure" : "neutral")
            }
            const failure = Cause.failureOption(exit.cause)
            const counts = Option.isNone(failure) || (options?.isFailure ? options.isFailure(failure.value) : true)
            return breaker.release(permit, counts ? "failure" : "neutral")
          })
        )
      )
    )
)
