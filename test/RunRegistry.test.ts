/**
 * The registry of live runs alone: a second delivery of a part joins the run in progress and gets
 * its outcome; a run whose scope closes without finishing leaves no stale entry and releases who
 * joined it as paused; a cancel reaches the job's live runs and is remembered for later ones.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as RunControl from "../src/engine/RunControl.js"
import * as RunRegistry from "../src/jobs/runner/RunRegistry.js"

describe("RunRegistry", () => {
  it.effect("a second registration of a key joins the live run and gets its outcome", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const scope = yield* Scope.make()
      const first = yield* Scope.extend(registry.register("j#0", "j", yield* RunControl.make), scope)
      expect(first._tag).toBe("Registered")
      const second = yield* Effect.scoped(registry.register("j#0", "j", yield* RunControl.make))
      if (second._tag !== "Joined" || first._tag !== "Registered") return expect.unreachable()
      const joined = yield* Effect.fork(second.outcome)
      yield* Deferred.succeed(first.run.done, "finished")
      expect(yield* Fiber.join(joined)).toBe("finished")
      expect(registry.isLive("j")).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(registry.isLive("j")).toBe(false)
      expect(registry.join("j#0")).toBeUndefined()
    })
  )

  it.effect("a run ended without finishing (interrupted) is removed, and whoever joined it is released as paused", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const scope = yield* Scope.make()
      yield* Scope.extend(registry.register("j#1", "j", yield* RunControl.make), scope)
      const joined = yield* Effect.fork(registry.join("j#1") ?? Effect.never)
      yield* Scope.close(scope, Exit.interrupt(0 as never))
      expect(yield* Fiber.join(joined)).toBe("paused")
      expect(registry.runs()).toEqual([])
      // A later delivery registers afresh instead of waiting on the stale run.
      const again = yield* Effect.scoped(registry.register("j#1", "j", yield* RunControl.make))
      expect(again._tag).toBe("Registered")
    })
  )

  it.effect("a cancel reaches every live run of the job, not others, and is remembered until forgotten", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const scope = yield* Scope.make()
      const a = yield* RunControl.make
      const b = yield* RunControl.make
      const other = yield* RunControl.make
      yield* Scope.extend(registry.register("j#0", "j", a), scope)
      yield* Scope.extend(registry.register("j#1", "j", b), scope)
      yield* Scope.extend(registry.register("k#0", "k", other), scope)
      yield* registry.cancel("j")
      expect(yield* Deferred.isDone(a.cancelled)).toBe(true)
      expect(yield* Deferred.isDone(b.cancelled)).toBe(true)
      expect(yield* Deferred.isDone(other.cancelled)).toBe(false)
      expect(registry.cancelAsked("j")).toBe(true)
      registry.forget("j")
      expect(registry.cancelAsked("j")).toBe(false)
      yield* Scope.close(scope, Exit.void)
    })
  )
})
