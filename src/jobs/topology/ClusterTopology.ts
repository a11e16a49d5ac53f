/**
 * The cluster topology: instances sharing a PostgreSQL database, each one runner of the cluster.
 * A job runs as parts spread over the runners and is ended by a last activity; a part is fenced to
 * one runner at a time (part locks); a job's concurrency limit, the upstream budgets and the breakers
 * are held together through the database; a job's progress is followed through the database, woken
 * by notifications. When storage goes, the cluster gives up its shards and stops the runs itself.
 */
import { SqlClient } from "@effect/sql"
import { Clock, Config, Duration, Effect, Layer } from "effect"
import * as Cluster from "../Cluster.js"
import * as ClusterBreakers from "../ClusterBreakers.js"
import * as ClusterBudgets from "../ClusterBudgets.js"
import * as ClusterGate from "../ClusterGate.js"
import * as Instances from "../Instances.js"
import * as JobNotifications from "../JobNotifications.js"
import * as PartLocks from "../PartLocks.js"
import { CoordinationStore } from "../store/Coordination.js"
import type { TopologyShape } from "./Shape.js"

/**
 * How many parts a job of `items` items runs as: one per `JOB_MIN_ITEMS_PER_PART` (50) items, at
 * most `JOB_PARTITIONS` (12), at least one. Starting a part costs ~31 ms of CPU (its child workflow
 * and activity, part lock, reads, a renewal of the job's share, an engine run: `bench:cluster
 * --items 24`), so a 24-item job as 12 parts cost ~510 ms of CPU against ~140 as one; a 2,000-item
 * job still runs as 12.
 */
export const partsConfig = Config.all({
  max: Config.integer("JOB_PARTITIONS").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(12)
  ),
  minItems: Config.integer("JOB_MIN_ITEMS_PER_PART").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(50)
  )
}).pipe(Config.map(({ max, minItems }) => (items: number) => Math.max(1, Math.min(max, Math.ceil(items / minItems)))))

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const coordination = yield* CoordinationStore
  const runnerId = yield* Cluster.runnerId
  const { lockExpiration } = yield* Cluster.runnerConfig
  const startedAt = yield* Clock.currentTimeMillis
  const partsOf = yield* partsConfig
  const gates = yield* ClusterGate.registry(coordination, runnerId, yield* ClusterGate.settingsConfig)
  const partLocks = yield* PartLocks.make
  const notifications = yield* JobNotifications.Notifications
  const shape: TopologyShape = {
    mode: "cluster",
    runnerId,
    soleRunner: false,
    runJob: (steps) => Effect.flatMap(steps.size, (items) => steps.inParts(partsOf(items))),
    partLocks,
    admission: ({ jobId, limit, pending }) =>
      Effect.gen(function* () {
        const gate = yield* gates.open(jobId, limit)
        yield* gate.want(pending)
        return { budget: gate.budget, done: gate.done }
      }),
    announce: notifications.announce,
    // The job may run in other instances, which only the database tells of.
    follow: (jobId, sources) => sources.stored(notifications.wakes(jobId)),
    awaitEnd: (jobId, sources) => Effect.raceFirst(sources.local, sources.stored(notifications.wakes(jobId, "ended"))),
    afterStorageOutage: Effect.void,
    slowProbe: "fault",
    instances: Instances.clusterRunners({ sql, self: runnerId, startedAt, lockExpirationMs: Duration.toMillis(lockExpiration) }),
    watchdog: Effect.provideService(Cluster.watchdog, SqlClient.SqlClient, sql)
  }
  return shape
}).pipe(Effect.orDie)

/** The workflow engine on the runners, and the breakers and upstream budgets held together. */
export const services = Layer.mergeAll(Cluster.runnersEngine, ClusterBreakers.layer, ClusterBudgets.shared)

/** The topology and its services, sharing one process's notifications (job followers, breakers, budgets). */
export const layer = <A, E, R>(topology: Layer.Layer<A, E, R>) =>
  Layer.merge(topology, services).pipe(Layer.provide(JobNotifications.layer))
