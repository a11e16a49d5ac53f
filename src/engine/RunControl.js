/**
 * A handle to steer a run from outside: cancel it (running attempts are interrupted, unfinished
 * items end as `cancelled`, finished results are kept). Resizing goes through `Adjustable` settings.
 */
import { Deferred, Effect } from "effect";
export const make = Effect.map(Deferred.make(), (cancelled) => ({
    cancel: Effect.asVoid(Deferred.succeed(cancelled, undefined)),
    cancelled
}));
