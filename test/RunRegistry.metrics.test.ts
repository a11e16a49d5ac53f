/**
 * `pp_job_parts_running`: a registered run counts from its registration until its scope closes,
 * however it ends; a delivery that joins a live run does not count again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FiberId, Metric, Scope } from "effect"
import * as RunControl from "../src/engine/RunControl.js"
import * as RunRegistry from "../src/jobs/runner/RunRegistry.js"

const running = Effect.map(Metric.value(RunRegistry.partsRunning), (state) => state.value)

describe("RunRegistry metrics", () => {
  it.effect("pp_job_parts_running follows the registered runs", () =>
    Effect.gen(function* () {
      const registry = yield* RunRegistry.make
      const before = yield* running
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      yield* Scope.extend(registry.register("m#0", "m", yield* RunControl.make), first)
      yield* Scope.extend(registry.register("m#1", "m", yield* RunControl.make), second)
      expect((yield* running) - before).toBe(2)
      // A second delivery of a live part joins it: still two.
      const joined = yield* Effect.scoped(registry.register("m#0", "m", yield* RunControl.make))
      expect(joined._tag).toBe("Joined")
      expect((yield* running) - before).toBe(2)
      yield* Scope.close(first, Exit.void)
      expect((yield* running) - before).toBe(1)
      yield* Scope.close(second, Exit.interrupt(FiberId.none))
      expect((yield* running) - before).toBe(0)
    })
  )
})
