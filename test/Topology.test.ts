/**
 * The single-process topology alone (an in-memory SQLite client): a job is one whole run, nothing is
 * fenced, and a run's admission is a valve that admits nothing while storage writes fail and opens
 * again when they work. And the cluster's rule for how many parts a job runs as.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, SubscriptionRef } from "effect"
import * as Budget from "../src/engine/Budget.js"
import * as ClusterTopology from "../src/jobs/topology/ClusterTopology.js"
import * as SingleProcess from "../src/jobs/topology/SingleProcess.js"

const settle = Effect.yieldNow().pipe(Effect.repeatN(20))

describe("Topology: single process", () => {
  it.scoped("one whole run per job, no fencing; the run's valve closes while storage fails", () =>
    Effect.gen(function* () {
      const topology = yield* SingleProcess.make.pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
      expect(topology.mode).toBe("single-process")
      expect(yield* topology.runJob({ whole: Effect.succeed("whole"), inParts: () => Effect.succeed("parts"), size: Effect.succeed(1) })).toBe("whole")
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

describe("Topology: cluster", () => {
  it.effect("a job runs as one part per JOB_MIN_ITEMS_PER_PART items (50), at most JOB_PARTITIONS (12), at least one", () =>
    Effect.gen(function* () {
      const partsOf = yield* ClusterTopology.partsConfig
      expect([0, 1, 24, 50, 51, 100, 599, 600, 2000].map(partsOf)).toEqual([1, 1, 1, 1, 2, 2, 12, 12, 12])
      const configured = yield* Effect.withConfigProvider(
        ClusterTopology.partsConfig,
        ConfigProvider.fromMap(new Map([["JOB_PARTITIONS", "24"], ["JOB_MIN_ITEMS_PER_PART", "1"]]))
      )
      expect([1, 8, 60].map(configured)).toEqual([1, 8, 24])
      const refused = yield* Effect.flip(
        Effect.withConfigProvider(ClusterTopology.partsConfig, ConfigProvider.fromMap(new Map([["JOB_MIN_ITEMS_PER_PART", "0"]])))
      )
      expect(String(refused)).toContain("JOB_MIN_ITEMS_PER_PART")
    })
  )
})
