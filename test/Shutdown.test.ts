/**
 * Shutdown coordination alone, under the TestClock: draining marks shutdown begun, waits for the live
 * runs to end, and gives up waiting after the grace period plus 2 s when a run does not end.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import * as RunControl from "../src/engine/RunControl.js"
import * as RunRegistry from "../src/jobs/runner/RunRegistry.js"
import * as Shutdown from "../src/jobs/runner/Shutdown.js"

const settle = Effect.yieldNow().pipe(Effect.repeatN(20))

describe("Shutdown", () => {
  it.effect("drain begins shutdown and waits for the live runs to end", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const shutdown = yield* Shutdown.make(registry, Duration.seconds(10))
      const scope = yield* Scope.make()
      const registered = yield* Scope.extend(registry.register("j#0", "j", yield* RunControl.make), scope)
      const draining = yield* Effect.fork(shutdown.drain)
      yield* settle
      expect(yield* shutdown.isShuttingDown).toBe(true)
      expect(draining.unsafePoll()).toBeNull()
      // The run stores what it had in flight and ends.
      if (registered._tag === "Registered") yield* Deferred.succeed(registered.run.done, "paused")
      yield* Fiber.join(draining)
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.effect("a run that does not end is waited for at most the grace period plus 2 s", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const shutdown = yield* Shutdown.make(registry, Duration.seconds(10))
      const scope = yield* Scope.make()
      yield* Scope.extend(registry.register("j#0", "j", yield* RunControl.make), scope)
      const draining = yield* Effect.fork(shutdown.drain)
      yield* TestClock.adjust(Duration.seconds(11))
      yield* settle
      expect(draining.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Fiber.join(draining)
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.effect("with no live run, drain ends at once", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const shutdown = yield* Shutdown.make(registry, Duration.seconds(10))
      yield* shutdown.drain
      expect(yield* shutdown.isShuttingDown).toBe(true)
    })
  )
})
