/**
 * A job's concurrency limit held across every instance together. Each runner keeps a lease on a
 * share of the limit in the shared database (`JobStore.renewClaim`: shares of live runners never add
 * up to more than the limit; a dead runner's share returns when its lease expires) and hands its
 * share out locally as FIFO permits, one per attempt in flight (a retry waiting for its backoff
 * holds none). The database is touched once per renewal, not once per call.
 */
import { Duration, Effect, Fiber, type RateLimiter, type Scope } from "effect"
import * as Permits from "../engine/Permits.js"
import type { JobStore } from "./JobStore.js"

export interface LocalGate {
  /**
   * Holds a permit for the duration of one attempt (the wait is outside the attempt's timeout).
   * Once `group` is stopped (`stop`), its attempts still waiting for a permit never start, so a
   * part being handed over only finishes what is already calling.
   */
  readonly limit: (group: Permits.Group) => RateLimiter.RateLimiter
  readonly group: () => Permits.Group
  readonly stop: (group: Permits.Group) => Effect.Effect<void>
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

export const make = (
  store: JobStore,
  gate: string,
  runner: string,
  limit: number,
  settings: GateSettings
): Effect.Effect<LocalGate, never, Scope.Scope> =>
  Effect.gen(function* () {
    // FIFO hand-off: every worker of every part of the job on this runner may be waiting here.
    const permits = Permits.unsafeMake(0)
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
      Effect.suspend(() => store.renewClaim(gate, runner, limit, Math.max(capacity, permits.inUse()), wants, leaseMs)).pipe(
        Effect.flatMap(({ target, settled }) => {
          unsettled = !settled
          if (target === capacity) return Effect.void
          const before = capacity
          capacity = target
          return Effect.zipRight(
            permits.resize(target),
            Effect.logDebug(`share of ${gate}: ${before} → ${target} of ${limit} (in use ${permits.inUse()}, wanted ${wants})`)
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
      limit: permits.withPermitIn,
      group: permits.group,
      stop: permits.stop,
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
