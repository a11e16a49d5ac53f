/**
 * The single-process topology: one process owns the embedded SQLite file (it is locked to it), so
 * it is the only runner, sees every job's events as they happen, and shares nothing. While storage
 * fails its runs start no call (a valve admits nothing), since their results could not be stored.
 */
import { SqlClient } from "@effect/sql"
import { Clock, Effect, Layer, Stream } from "effect"
import * as Budget from "../../engine/Budget.js"
import * as Cluster from "../Cluster.js"
import * as ClusterBudgets from "../ClusterBudgets.js"
import * as Instances from "../Instances.js"
import * as PartLocks from "../PartLocks.js"
import type { TopologyShape } from "./Shape.js"

export const make: Effect.Effect<TopologyShape, never, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const startedAt = yield* Clock.currentTimeMillis
  return {
    mode: "single-process",
    runnerId: "local",
    soleRunner: true,
    runJob: (steps) => steps.whole,
    partLocks: PartLocks.none,
    // No attempt starts while storage fails; one waiting here holds nothing and leaves on a drain like
    // any other waiter. What is kept in memory meanwhile is bounded by the calls that were in flight.
    admission: ({ runKey, storageWorking }) =>
      Effect.gen(function* () {
        const valve = yield* Budget.make({ key: `storage:${runKey}`, ceiling: 10_000, passive: true })
        yield* storageWorking.pipe(
          Stream.runForEach((working) => valve.update({ share: working ? null : 0 })),
          Effect.interruptible,
          Effect.forkScoped
        )
        return { budget: valve, done: () => {} }
      }),
    announce: () => Effect.void,
    follow: (_, sources) => sources.local,
    awaitEnd: (_, sources) => sources.local,
    afterStorageOutage: Effect.provideService(Cluster.rearmStoredMessages, SqlClient.SqlClient, sql),
    slowProbe: "busy",
    instances: Instances.alone("local", startedAt),
    watchdog: Effect.never
  }
})

/** The workflow engine on this process's one runner; budgets are the process's own. */
export const services = Layer.merge(Cluster.singleRunnerEngine, ClusterBudgets.local)
