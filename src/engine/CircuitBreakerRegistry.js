/**
 * The process-wide set of circuit breakers, one per upstream key, so every batch that calls the same
 * upstream shares what the others learned about its health.
 */
import { Effect, HashMap, Layer, Option, PubSub, Stream, SynchronizedRef } from "effect";
import * as CircuitBreaker from "./CircuitBreaker.js";
export class CircuitBreakerRegistry extends Effect.Service()("parallel-processor/CircuitBreakerRegistry", {
    scoped: Effect.gen(function* () {
        const defaults = yield* DefaultBreakerSettings;
        const transitions = yield* Effect.acquireRelease(PubSub.unbounded(), PubSub.shutdown);
        const breakers = yield* SynchronizedRef.make(HashMap.empty());
        /** The breaker for `key`, created with `settings` (else the registry defaults) on first use. */
        const get = (key, settings) => SynchronizedRef.modifyEffect(breakers, (map) => Option.match(HashMap.get(map, key), {
            onSome: (breaker) => Effect.succeed([breaker, map]),
            onNone: () => Effect.map(CircuitBreaker.makeWith(key, { ...defaults, ...settings }, transitions), (breaker) => [breaker, HashMap.set(map, key, breaker)])
        }));
        const snapshots = Effect.flatMap(SynchronizedRef.get(breakers), (map) => Effect.forEach(HashMap.values(map), (b) => b.snapshot)).pipe(Effect.map((all) => all.slice().sort((a, b) => a.key.localeCompare(b.key))));
        return {
            get,
            /** Every breaker's current state, sorted by key. */
            snapshots,
            /** Transitions of every breaker, from now on. */
            changes: Stream.fromPubSub(transitions)
        };
    }),
    dependencies: []
}) {
}
/** The settings new breakers get when `get` is not given any. */
export class DefaultBreakerSettings extends Effect.Tag("parallel-processor/DefaultBreakerSettings")() {
    static layer = (settings = {}) => Layer.succeed(DefaultBreakerSettings, { ...CircuitBreaker.defaultSettings, ...settings });
}
/** The registry with the built-in breaker defaults. */
export const layer = CircuitBreakerRegistry.Default.pipe(Layer.provide(DefaultBreakerSettings.layer()));
/** The registry with custom defaults for breakers created without explicit settings. */
export const layerWith = (settings) => CircuitBreakerRegistry.Default.pipe(Layer.provide(DefaultBreakerSettings.layer(settings)));
