/**
 * The process-wide set of circuit breakers, one per upstream key, so every batch that calls the same
 * upstream shares what the others learned about its health.
 */
import { Config, type Duration, Effect, HashMap, Layer, Option, PubSub, Stream, SynchronizedRef } from "effect"
import * as CircuitBreaker from "./CircuitBreaker.js"

export class CircuitBreakerRegistry extends Effect.Service<CircuitBreakerRegistry>()(
  "parallel-processor/CircuitBreakerRegistry",
  {
    scoped: Effect.gen(function* () {
      const defaults = yield* DefaultBreakerSettings
      const transitions = yield* Effect.acquireRelease(PubSub.unbounded<CircuitBreaker.Transition>(), PubSub.shutdown)
      const breakers = yield* SynchronizedRef.make(HashMap.empty<string, CircuitBreaker.CircuitBreaker>())

      /** The breaker for `key`, created with `settings` (else the registry defaults) on first use. */
      const get = (key: string, settings?: Partial<CircuitBreaker.Settings>) =>
        SynchronizedRef.modifyEffect(breakers, (map) =>
          Option.match(HashMap.get(map, key), {
            onSome: (breaker) => Effect.succeed([breaker, map] as const),
            onNone: () =>
              Effect.map(
                CircuitBreaker.makeWith(key, { ...defaults, ...settings }, transitions),
                (breaker) => [breaker, HashMap.set(map, key, breaker)] as const
              )
          })
        )

      const snapshots = Effect.flatMap(SynchronizedRef.get(breakers), (map) =>
        Effect.forEach(HashMap.values(map), (b) => b.snapshot)
      ).pipe(Effect.map((all) => all.slice().sort((a, b) => a.key.localeCompare(b.key))))

      return {
        get,
        /** Every breaker's current state, sorted by key. */
        snapshots,
        /** Transitions of every breaker, from now on. */
        changes: Stream.fromPubSub(transitions)
      } as const
    }),
    dependencies: []
  }
) {}

/** The settings new breakers get when `get` is not given any. */
export class DefaultBreakerSettings extends Effect.Tag("parallel-processor/DefaultBreakerSettings")<
  DefaultBreakerSettings,
  CircuitBreaker.Settings
>() {
  static readonly layer = (settings: Partial<CircuitBreaker.Settings> = {}) =>
    Layer.succeed(DefaultBreakerSettings, { ...CircuitBreaker.defaultSettings, ...settings })
}

/** The registry with the built-in breaker defaults. */
export const layer = CircuitBreakerRegistry.Default.pipe(Layer.provide(DefaultBreakerSettings.layer()))

/** The registry with custom defaults for breakers created without explicit settings. */
export const layerWith = (settings: Partial<CircuitBreaker.Settings>) =>
  CircuitBreakerRegistry.Default.pipe(Layer.provide(DefaultBreakerSettings.layer(settings)))

/**
 * The registry with `BREAKER_RECOVERY_TIMEOUT` (how long a breaker stays open before a probe; default
 * 60 s) read from the environment; an invalid value keeps the default, with a warning.
 */
export const layerFromConfig = Layer.unwrapEffect(
  Config.duration("BREAKER_RECOVERY_TIMEOUT").pipe(
    Config.option,
    Effect.tapError((error) => Effect.logWarning(`ignoring invalid BREAKER_RECOVERY_TIMEOUT: ${error.message}`)),
    Effect.orElseSucceed(() => Option.none<Duration.Duration>()),
    Effect.map((recovery) =>
      Option.match(recovery, { onNone: () => layer, onSome: (recoveryTimeout) => layerWith({ recoveryTimeout }) })
    )
  )
)
