/**
 * A handle to steer a run from outside: cancel it (running attempts are interrupted, unfinished
 * items end as `cancelled`, finished results are kept), or drain it (nothing new starts, the calls
 * in flight get a grace period to finish, and the items left without a result are reported as left
 * over rather than given one — for a shutdown or hand-over whose next run picks them up). Resizing
 * goes through `Adjustable` settings.
 */
import { Deferred, Duration, Effect } from "effect"

export interface RunControl {
  /**
   * Stop the run: in-flight attempts are interrupted and every unfinished item ends `cancelled`.
   * Also during a drain's grace period, where it turns the drain into a cancel.
   */
  readonly cancel: Effect.Effect<void>
  /** Completed once `cancel` has been called. */
  readonly cancelled: Deferred.Deferred<void>
  /**
   * Stop taking items: no item is taken from the input and no attempt starts a call any more — not
   * a retry waiting for its backoff, not one waiting for admission (the run's budget tenant is
   * stopped, see `Budget.stop`). Calls in flight may finish within `grace`; their results are
   * delivered as usual. Once none is calling, or when `grace` is over, whatever still runs is
   * interrupted. The run then ends with `stoppedBy: "drained"`, and the items without a result get
   * none: their indices are in `RunSummary.unfinished`. Only the first call's grace counts; after
   * the run ended it does nothing.
   */
  readonly drain: (grace: Duration.DurationInput) => Effect.Effect<void>
  /** Completed, with the grace period, once `drain` has been called. */
  readonly draining: Deferred.Deferred<Duration.Duration>
}

export const make: Effect.Effect<RunControl> = Effect.map(
  Effect.all([Deferred.make<void>(), Deferred.make<Duration.Duration>()]),
  ([cancelled, draining]) => ({
    cancel: Effect.asVoid(Deferred.succeed(cancelled, undefined)),
    cancelled,
    drain: (grace) => Effect.asVoid(Deferred.succeed(draining, Duration.decode(grace))),
    draining
  })
)
