/**
 * A handle to steer a run from outside: cancel it (running attempts are interrupted, unfinished
 * items end as `cancelled`, finished results are kept). Resizing goes through `Adjustable` settings.
 */
import { Deferred, Effect } from "effect"

export interface RunControl {
  /** Stop the run: in-flight attempts are interrupted and every unfinished item ends `cancelled`. */
  readonly cancel: Effect.Effect<void>
  /** Completed once `cancel` has been called. */
  readonly cancelled: Deferred.Deferred<void>
}

export const make: Effect.Effect<RunControl> = Effect.map(Deferred.make<void>(), (cancelled) => ({
  cancel: Effect.asVoid(Deferred.succeed(cancelled, undefined)),
  cancelled
}))
