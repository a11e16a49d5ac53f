/**
 * Shutdown coordination for the runs of this process: once shutdown begins no run starts, and the
 * live ones drain (no new call, the calls in flight finish within the grace period and are stored);
 * shutdown waits for them, bounded. Each run watches `began` and drains itself.
 */
import { Deferred, Duration, Effect, Fiber } from "effect"
import type { RunRegistry } from "./RunRegistry.js"

/**
 * Waits for `self` at most `limit`. Safe in a finalizer of an interrupted fiber, where shutdown code
 * runs: there an `Effect.interruptible` region ends at once (the fiber's interruption is still
 * pending), so a plain `Effect.timeout(…).pipe(Effect.interruptible)` would not wait at all. The wait
 * runs in a fiber of its own, which nothing has interrupted — not a child fiber, since interrupting a
 * fiber signals its children at once.
 */
export const awaitWithin = <A, E, R>(self: Effect.Effect<A, E, R>, limit: Duration.DurationInput) =>
  self.pipe(Effect.timeout(limit), Effect.interruptible, Effect.forkDaemon, Effect.flatMap(Fiber.join))

export interface Shutdown {
  /** Completed when shutdown begins: runs drain, waiting requests answer, nothing new starts. */
  readonly began: Deferred.Deferred<void>
  readonly isShuttingDown: Effect.Effect<boolean>
  /** Begins shutdown and waits (at most the grace period and 2 s) until the live runs have stopped. */
  readonly drain: Effect.Effect<void>
}

export const make = (registry: RunRegistry, grace: Duration.Duration): Effect.Effect<Shutdown> =>
  Effect.map(Deferred.make<void>(), (began) => ({
    began,
    isShuttingDown: Deferred.isDone(began),
    drain: Effect.gen(function* () {
      yield* Deferred.succeed(began, undefined)
      const runs = registry.runs()
      if (runs.length === 0) return
      yield* Effect.logInfo(
        `shutdown: draining ${runs.length} running job(s), grace ${Duration.format(grace)}: ${runs.map(([key]) => key).join(", ")}`
      )
      yield* awaitWithin(
        Effect.forEach(runs, ([, run]) => Deferred.await(run.done), { discard: true, concurrency: "unbounded" }),
        Duration.sum(grace, Duration.seconds(2))
      ).pipe(Effect.ignore)
    })
  }))
