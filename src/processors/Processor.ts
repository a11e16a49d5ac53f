/**
 * What the three domain processors share: a name, limits that an operator can change while batches
 * run (`Adjustable`), per-request overrides, and the engine entry points bound to the processor's task.
 * Defaults come from the guide and can be overridden by environment variables
 * (`<PREFIX>_MAX_CONCURRENT`, `<PREFIX>_TIMEOUT_SECONDS`) and per request.
 */
import { Config, Duration, Effect, type RateLimiter, type Stream } from "effect"
import * as Adjustable from "../engine/Adjustable.js"
import type { Budget, Priority, Tenant } from "../engine/Budget.js"
import type { CircuitBreaker } from "../engine/CircuitBreaker.js"
import * as Engine from "../engine/Engine.js"
import type { ItemResult } from "../engine/ItemResult.js"
import type { Policy } from "../engine/Policy.js"
import type { ProgressEvent, RunSummary } from "../engine/Progress.js"
import * as RetryPolicy from "../engine/RetryPolicy.js"
import { maxRetryAfter } from "../upstream/UpstreamConfig.js"

/** Per-request overrides; absent fields follow the processor's current (adjustable) settings. */
export interface Overrides {
  /** A number, or a setting the run follows while it runs (e.g. a job part's share of its job's limit). */
  readonly maxConcurrent?: number | Adjustable.Adjustable<number>
  readonly timeoutSeconds?: number
  /** Library use only (not exposed over HTTP): a different retry policy for this run (replacing `MAX_RETRY_AFTER`'s cap too). */
  readonly retry?: RetryPolicy.RetryPolicy
  /** Whole-batch deadline, from the start of the run. */
  readonly deadline?: Duration.DurationInput
  /** Whole-batch deadline as a fixed moment (epoch ms): a job's start + its `deadlineSeconds`, kept across restarts. */
  readonly deadlineAt?: number
  /** Library use only: an Effect `RateLimiter` taken around each attempt, outside its timeout. Upstream limits belong in budgets. */
  readonly rateLimiter?: RateLimiter.RateLimiter
  /** Admits each attempt before the task runs (e.g. a job's cluster-wide share); see `Policy.budget`. */
  readonly budget?: Budget
  /** This run's turn at the upstream budgets. Default `"normal"`. */
  readonly priority?: Priority
  /** Who this run is to the upstream budgets (see `Policy.tenant`). */
  readonly tenant?: Tenant
}

export interface Limits {
  readonly maxConcurrent: number
  readonly timeoutSeconds: number
}

export interface Processor<I, A> {
  readonly name: string
  readonly maxConcurrent: Adjustable.Adjustable<number>
  readonly attemptTimeout: Adjustable.Adjustable<Duration.Duration>
  /** The limits right now. */
  readonly limits: Effect.Effect<Limits>
  readonly policy: (overrides?: Overrides) => Partial<Policy>
  readonly run: (
    items: Iterable<I>,
    overrides?: Overrides,
    options?: Engine.RunOptions<I, A>
  ) => Effect.Effect<{ readonly results: ReadonlyArray<ItemResult<A>>; readonly summary: RunSummary }>
  readonly events: (
    items: ReadonlyArray<I>,
    overrides?: Overrides,
    options?: Omit<Engine.RunOptions<I, A>, "onEvent">
  ) => Stream.Stream<ProgressEvent<A>>
}

export interface ProcessorDefinition<I, A> {
  readonly name: string
  /** Environment variable prefix, e.g. `INTERACTIONS`. */
  readonly envPrefix: string
  readonly defaults: Limits
  readonly task: Engine.Task<I, A, never>
  readonly idOf: (item: I, index: number) => string
  readonly breaker?: CircuitBreaker
}

export const make = <I, A>(definition: ProcessorDefinition<I, A>): Effect.Effect<Processor<I, A>, never, never> =>
  Effect.gen(function* () {
    const { envPrefix, defaults } = definition
    // An invalid value falls back to the default for that setting alone, with a warning.
    const setting = (config: Config.Config<number>, name: string, fallback: number) =>
      config.pipe(
        Effect.tapError((error) => Effect.logWarning(`ignoring invalid ${name}: ${error.message}`)),
        Effect.orElseSucceed(() => fallback)
      )
    const configured = {
      maxConcurrent: yield* setting(
        Config.integer(`${envPrefix}_MAX_CONCURRENT`).pipe(
          Config.validate({ message: "must be between 1 and 64", validation: (n) => n >= 1 && n <= 64 }),
          Config.withDefault(defaults.maxConcurrent)
        ),
        `${envPrefix}_MAX_CONCURRENT`,
        defaults.maxConcurrent
      ),
      timeoutSeconds: yield* setting(
        Config.number(`${envPrefix}_TIMEOUT_SECONDS`).pipe(
          Config.validate({ message: "must be between 0.1 and 3600", validation: (n) => n >= 0.1 && n <= 3600 }),
          Config.withDefault(defaults.timeoutSeconds)
        ),
        `${envPrefix}_TIMEOUT_SECONDS`,
        defaults.timeoutSeconds
      )
    }
    // The default retry rules, with the service's cap on how long an upstream may make an item wait.
    const retry = RetryPolicy.make({ maxRetryAfter: yield* maxRetryAfter })
    const maxConcurrent = yield* Adjustable.make(configured.maxConcurrent)
    const attemptTimeout = yield* Adjustable.make(Duration.seconds(configured.timeoutSeconds))

    const policy = (overrides: Overrides = {}): Partial<Policy> => ({
      name: definition.name,
      maxConcurrent: overrides.maxConcurrent ?? maxConcurrent,
      attemptTimeout: overrides.timeoutSeconds === undefined ? attemptTimeout : Duration.seconds(overrides.timeoutSeconds),
      retry: overrides.retry ?? retry,
      ...(overrides.deadline === undefined ? {} : { deadline: overrides.deadline }),
      ...(overrides.deadlineAt === undefined ? {} : { deadlineAt: overrides.deadlineAt }),
      ...(overrides.rateLimiter === undefined ? {} : { rateLimiter: overrides.rateLimiter }),
      ...(overrides.budget === undefined ? {} : { budget: overrides.budget }),
      ...(overrides.priority === undefined ? {} : { priority: overrides.priority }),
      ...(overrides.tenant === undefined ? {} : { tenant: overrides.tenant }),
      ...(definition.breaker === undefined ? {} : { breaker: definition.breaker })
    })
    const withIds = <O extends { readonly idOf?: (item: I, index: number) => string }>(options: O): O & {
      readonly idOf: (item: I, index: number) => string
    } => ({ ...options, idOf: options.idOf ?? definition.idOf })

    return {
      name: definition.name,
      maxConcurrent,
      attemptTimeout,
      limits: Effect.all({
        maxConcurrent: maxConcurrent.get,
        timeoutSeconds: Effect.map(attemptTimeout.get, Duration.toSeconds)
      }),
      policy,
      run: (items, overrides, options = {}) =>
        Engine.runWithSummary(items, definition.task, policy(overrides), withIds(options)),
      events: (items, overrides, options = {}) => Engine.events(items, definition.task, policy(overrides), withIds(options))
    }
  })
