/**
 * Everything that governs how a run treats its items: how many at once, how long each attempt may
 * take, how failures are retried, the whole-batch deadline, the circuit breaker and rate limit.
 */
import { Duration, type RateLimiter } from "effect"
import type { Adjustable } from "./Adjustable.js"
import type { Budget, Priority, Tenant } from "./Budget.js"
import type { CircuitBreaker } from "./CircuitBreaker.js"
import * as RetryPolicy from "./RetryPolicy.js"

export interface Policy {
  /** Name used in logs and metric tags (e.g. the processor). Default `"default"`. */
  readonly name: string
  /**
   * Attempts running at once. Work-conserving: a slot is refilled the moment an attempt ends, and a
   * retry waiting for its backoff does not hold one. Pass an `Adjustable` to change it mid-run.
   * Default 10.
   */
  readonly maxConcurrent: number | Adjustable<number>
  /** Per-attempt timeout: the attempt is interrupted (its AbortSignal fires). Default 30 s. */
  readonly attemptTimeout: Duration.DurationInput | Adjustable<Duration.Duration>
  /** Retry rules per failure class. Default `RetryPolicy.defaults` (3 retries). */
  readonly retry: RetryPolicy.RetryPolicy
  /**
   * Whole-run deadline, measured from the start of the run. When it passes, finished items keep
   * their results, running attempts are interrupted and everything unfinished ends as
   * `deadline_exceeded`. Default: none.
   */
  readonly deadline?: Duration.DurationInput
  /**
   * The same deadline as a fixed moment (epoch milliseconds on the run's `Clock`), e.g. a job's
   * start + its deadline, so a run resumed after a restart keeps the deadline it began with. With
   * both, the earlier applies; a moment already past ends every unfinished item at once. Default: none.
   */
  readonly deadlineAt?: number
  /** Breaker guarding the upstream the task calls. Default: none. */
  readonly breaker?: CircuitBreaker
  /**
   * While the breaker is open: `"fail"` ends items at once as `circuit_open`; `"wait"` retries them
   * after the breaker's recovery time (each such wait uses one retry). Default `"fail"`.
   */
  readonly whenBreakerOpen: "fail" | "wait"
  /**
   * The upstream's budget, shared with every other run calling it: each attempt waits for admission
   * (holding nothing: the attempt's timeout has not started and it is not in flight), then goes
   * through the breaker, then calls. Tasks that call several upstreams use `AttemptContext.guard`
   * per call instead. Default: none.
   */
  readonly budget?: Budget
  /** This run's turn at a budget: higher levels first, round-robin within one. Default `"normal"`. */
  readonly priority?: Priority
  /**
   * Who this run is to budgets (fair share is between tenants). Runs passing the same tenant share
   * one turn (the parts of a job). Default: a tenant of its own, named by the run id.
   */
  readonly tenant?: Tenant
  /** An Effect `RateLimiter` taken before each attempt, after admission (outside its timeout). For an upstream, prefer a `Budget` with a `rate`. Default: none. */
  readonly rateLimiter?: RateLimiter.RateLimiter
  /**
   * Items waiting for a retry beyond which no new items are started (bounds memory when an upstream
   * asks everyone to wait). Default: 4 × maxConcurrent.
   */
  readonly maxWaiting?: number
}

export const defaults: Policy = {
  name: "default",
  maxConcurrent: 10,
  attemptTimeout: Duration.seconds(30),
  retry: RetryPolicy.defaults,
  whenBreakerOpen: "fail"
}

/** The defaults with some fields replaced. */
export const make = (overrides: Partial<Policy> = {}): Policy => ({ ...defaults, ...overrides })
