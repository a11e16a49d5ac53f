/**
 * When to try an item again, per class of failure ("smart retry"). Each class has its own `Schedule`;
 * server-provided waits (`Retry-After`, an open breaker's recovery time) take precedence over the
 * schedule. Permanent failures and invalid responses are never retried.
 */
import { Duration, Effect, Option, Random, Schedule, ScheduleDecision, ScheduleIntervals } from "effect"
import type { TaskError } from "./Errors.js"

/** The failure classes that may be retried. */
export type RetryClass = "timeout" | "rate_limited" | "transient" | "circuit_open"

export interface RetryPolicy {
  /** Retries after the first attempt; an item is attempted at most `maxRetries + 1` times. Default 3. */
  readonly maxRetries: number
  /** Delay schedule per class. The schedule's input is the error that caused the retry. */
  readonly schedules: { readonly [K in RetryClass]: Schedule.Schedule<unknown, TaskError> }
  /**
   * Extra random wait on top of a server-provided delay, as a fraction of it (0.1 → up to +10%),
   * so that many items told "retry after 5 s" don't all come back in the same millisecond.
   * Default 0.1.
   */
  readonly serverDelayJitter: number
  /**
   * The longest wait an upstream may ask for (`Retry-After`, a reset header, a 503's `Retry-After`).
   * An item told to wait longer is not retried: it fails at once with that error (`retryAfterMs`
   * says how long the upstream asked for), and it does not wait past this at a budget's shared
   * pause either. The engine's own waits (schedules, an open breaker's recovery time) are not
   * capped by it. Default: none (every stated wait is obeyed).
   */
  readonly maxRetryAfter?: Duration.Duration
}

/** Exponential backoff from `base`, multiplied by `factor` each time, jittered ±20%, never above `cap`. */
export const exponentialCapped = (options: {
  readonly base: Duration.DurationInput
  readonly factor?: number
  readonly cap: Duration.DurationInput
}): Schedule.Schedule<unknown, unknown> => {
  const cap = Duration.decode(options.cap)
  return Schedule.exponential(options.base, options.factor ?? 2).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((_, delay) => Duration.min(delay, cap))
  )
}

/** A fixed wait between tries, jittered ±20%. */
export const fixedJittered = (delay: Duration.DurationInput): Schedule.Schedule<unknown, unknown> =>
  Schedule.spaced(delay).pipe(Schedule.jittered)

export const defaults: RetryPolicy = {
  maxRetries: 3,
  schedules: {
    timeout: exponentialCapped({ base: "1 second", factor: 2, cap: "30 seconds" }),
    rate_limited: fixedJittered("60 seconds"),
    transient: fixedJittered("5 seconds"),
    circuit_open: fixedJittered("5 seconds")
  },
  serverDelayJitter: 0.1
}

/** The default policy with some fields replaced. */
export const make = (
  overrides: {
    readonly maxRetries?: number
    readonly schedules?: Partial<RetryPolicy["schedules"]>
    readonly serverDelayJitter?: number
    readonly maxRetryAfter?: Duration.DurationInput
  } = {}
): RetryPolicy => ({
  maxRetries: overrides.maxRetries ?? defaults.maxRetries,
  schedules: { ...defaults.schedules, ...overrides.schedules },
  serverDelayJitter: overrides.serverDelayJitter ?? defaults.serverDelayJitter,
  ...(overrides.maxRetryAfter === undefined ? {} : { maxRetryAfter: Duration.decode(overrides.maxRetryAfter) })
})

/** The retry class of an error, or `undefined` when that error is never retried. */
export const classOf = (error: TaskError): RetryClass | undefined => {
  switch (error._tag) {
    case "AttemptTimeout":
      return "timeout"
    case "RateLimited":
      return "rate_limited"
    case "Transient":
      return "transient"
    case "CircuitOpen":
      return "circuit_open"
    default:
      return undefined
  }
}

/** Per-item schedule states, one per class, created on first use. */
export type RetryState = Partial<Record<RetryClass, unknown>>

const serverDelay = (error: TaskError): Duration.Duration | undefined =>
  error._tag === "RateLimited" || error._tag === "CircuitOpen" || error._tag === "Transient" ? error.retryAfter : undefined

/** The wait the upstream itself asked for (429/503 headers), in ms; not an open breaker's recovery time. */
export const upstreamDelayMs = (error: TaskError): number | undefined =>
  (error._tag === "RateLimited" || error._tag === "Transient") && error.retryAfter !== undefined
    ? Duration.toMillis(error.retryAfter)
    : undefined

/** `maxRetryAfter` in ms, or `undefined` when waits are not capped. */
export const maxRetryAfterMs = (policy: RetryPolicy): number | undefined =>
  policy.maxRetryAfter === undefined ? undefined : Duration.toMillis(policy.maxRetryAfter)

/**
 * The wait before the next try of an item that just failed with `error`, or `None` when it must not
 * be retried (class never retried, or its schedule is exhausted). Does not check `maxRetries`.
 */
export const nextDelay = (
  policy: RetryPolicy,
  error: TaskError,
  state: RetryState,
  now: number
): Effect.Effect<Option.Option<number>> => {
  const cls = classOf(error)
  if (cls === undefined) return Effect.succeedNone
  const schedule = policy.schedules[cls]
  // The schedule steps even when the server named a wait, so its own limits (e.g. `Schedule.recurs`)
  // keep applying; the server's wait then replaces the schedule's delay.
  return Effect.flatMap(schedule.step(now, error, state[cls] ?? schedule.initial), ([next, , decision]) => {
    if (ScheduleDecision.isDone(decision)) return Effect.succeedNone
    state[cls] = next
    const given = serverDelay(error)
    if (given === undefined) return Effect.succeedSome(Math.max(0, ScheduleIntervals.start(decision.intervals) - now))
    const base = Duration.toMillis(given)
    return Effect.map(Random.next, (r) => Option.some(base + base * policy.serverDelayJitter * r))
  })
}
