/**
 * The single-process topology alone (an in-memory SQLite client): a job is one whole run, nothing is
 * fenced, and a run's admission is a valve that admits nothing while storage writes fail and opens
 * again when they work.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, SubscriptionRef } from "effect"
import * as Budget from "../src/engine/Budget.js"
import * as SingleProcess from "../src/jobs/topology/SingleProcess.js"

const settle = Effect.yieldNow().pipe(Effect.repeatN(20))

describe("Topology: single process", () => {
  it.scoped("one whole run per job, no fencing; the run's valve closes while storage fails", () =>
    Effect.gen(function* () {
      const topology = yield* SingleProcess.make.pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
      expect(topology.mode).toBe("single-process")
      expect(yield* topology.runJob({ whole: Effect.succeed("whole"), inParts: () => Effect.succeed("parts") })).toBe("whole")
      expect(yield* Effect.scoped(topology.partLocks.hold("j", 0, Effect.succeed(false)))).toBe(true)

      const working = yield* SubscriptionRef.make(true)
      const admission = yield* topology.admission({
        jobId: "j",
        runKey: "j#0",
        limit: 3,
        pending: 10,
        storageWorking: working.changes
      })
      const tenant = Budget.tenant("j#0")
      yield* admission.budget.admit(tenant)(Effect.void)
      yield* SubscriptionRef.set(working, false)
      yield* settle
      const waiting = yield* Effect.fork(admission.budget.admit(tenant)(Effect.succeed("called")))
      yield* settle
      expect(waiting.unsafePoll()).toBeNull()
      yield* SubscriptionRef.set(working, true)
      expect(yield* Fiber.join(waiting)).toBe("called")
    })
  )
})
