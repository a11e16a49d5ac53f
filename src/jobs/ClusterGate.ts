/**
 * A job's concurrency limit held across every instance together. Each runner keeps a lease on a
 * share of the limit in the shared database (`CoordinationStore.renewClaim`: shares of live runners never add
 * up to more than the limit; a dead runner's share returns when its lease expires) and admits its
 * attempts through a passive `Budget` whose share is that lease — the same admission mechanism as the
 * upstream budgets, so a draining run's waiters leave it the same way (`Budget.stop` of the run's
 * tenant) and a retry waiting for its backoff holds nothing. The database is touched once per
 * renewal, not once per call.
 */
import { Config, Data, Duration, Effect, Fiber, RcMap, type Scope } from "effect"
import * as Budget from "../engine/Budget.js"
import type { CoordinationStore } from "./store/Coordination.js"

export interface LocalGate {
  /** Admits the job's attempts on this runner (`Policy.budget`); outside the attempt's timeout. */
  readonly budget: Budget.Budget
  /** Items this runner will want to run (renewals ask for a share that fits them). */
  readonly want: (n: number) => Effect.Effect<void>
  /** Items that no longer need a permit (finished, or left for another run). */
  readonly done: (n: number) => void
}

export interface GateSettings {
  readonly renewEvery: Duration.Duration
  /** Renewal interval while shares are moving between runners. */
  readonly settleEvery: Duration.Duration
  readonly lease: Duration.Duration
}

/** How shares are leased, for jobs' limits and upstream budgets alike. */
export const settingsConfig: Config.Config<GateSettings> = Config.all({
  renewEvery: Config.duration("CLUSTER_LIMIT_RENEW_INTERVAL").pipe(Config.withDefault(Duration.millis(250))),
  settleEvery: Config.duration("CLUSTER_LIMIT_SETTLE_INTERVAL").pipe(Config.withDefault(Duration.millis(25))),
  lease: Config.duration("CLUSTER_LIMIT_LEASE").pipe(Config.withDefault(Duration.seconds(5)))
})

export const make = (
  store: CoordinationStore,
  gate: string,
  runner: string,
  limit: number,
  settings: GateSettings
): Effect.Effect<LocalGate, never, Scope.Scope> =>
  Effect.gen(function* () {
    // Every worker of every part of the job on this runner may be waiting here; the share starts at 0.
    const budget = yield* Budget.make({ key: gate, ceiling: limit, passive: true })
    yield* budget.update({ share: 0 })
    const inUse = budget.inFlight
    let wants = 0
    let capacity = 0
    const leaseMs = Duration.toMillis(settings.lease)
    // Renewals take turns: the stored share and the local capacity must change in the order they
    // were decided. The stored share is never below what may be in use (capacity or taken); the
    // local capacity follows the decided target at once, down or up.
    const mutex = yield* Effect.makeSemaphore(1)
    // While shares are moving between runners renewals come every `settings.settleEvery`; once
    // settled, every `settings.renewEvery`.
    let unsettled = true
    const renew = mutex.withPermits(1)(
      Effect.suspend(() => store.renewClaim(gate, runner, limit, Math.max(capacity, inUse()), wants, leaseMs)).pipe(
        Effect.flatMap(({ target, settled }) => {
          unsettled = !settled
          if (target === capacity) return Effect.void
          const before = capacity
          capacity = target
          return Effect.zipRight(
            budget.update({ share: target }),
            Effect.logDebug(`share of ${gate}: ${before} → ${target} of ${limit} (in use ${inUse()}, wanted ${wants})`)
          )
        }),
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("renewal timed out") }),
        // A failed renewal keeps the current share; the lease covers a few missed renewals.
        Effect.catchAll((error) => Effect.logWarning(`could not renew the concurrency share of ${gate}: ${error.message}`))
      )
    )
    const renewing = yield* Effect.suspend(() => Effect.sleep(unsettled ? settings.settleEvery : settings.renewEvery)).pipe(
      Effect.zipRight(renew),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* Effect.addFinalizer(() =>
      Fiber.interrupt(renewing).pipe(Effect.zipRight(Effect.ignore(store.dropClaim(gate, runner))))
    )
    return {
      budget,
      want: (n) =>
        Effect.suspend(() => {
          wants += n
          // Ask at once rather than at the next renewal, so a new job starts without waiting.
          return renew
        }),
      done: (n) => {
        wants -= n
      }
    }
  })

/**
 * The gates of the jobs running on this runner, one per job: the job's parts here share it (one
 * share of the job's limit per runner, not per part), and it is closed with the last of them.
 * An `RcMap`: parts start together, and two of them must not both find no gate and make one each.
 */
export const registry = (store: CoordinationStore, runner: string, settings: GateSettings) =>
  Effect.gen(function* () {
    const gates = yield* RcMap.make({
      lookup: (key: { readonly jobId: string; readonly limit: number }) => make(store, `job:${key.jobId}`, runner, key.limit, settings)
    })
    return {
      /** The job's gate on this runner until the scope closes. */
      open: (jobId: string, limit: number): Effect.Effect<LocalGate, never, Scope.Scope> => RcMap.get(gates, Data.struct({ jobId, limit }))
    } as const
  })
