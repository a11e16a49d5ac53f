/**
 * The `@effect/cluster` runtime jobs execute on. Embedded SQLite: one runner in this process (the
 * data file is locked to it). PostgreSQL: this process is one of N runners that share the database,
 * talk to each other over sockets (`RUNNER_HOST`:`RUNNER_PORT`) and own a share of the shards each;
 * a dead runner's shards move to the survivors.
 */
import * as ClusterWorkflowEngine from "@effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import * as RunnerStorage from "@effect/cluster/RunnerStorage"
import * as ShardId from "@effect/cluster/ShardId"
import * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import { layerClientProtocol, layerSocketServer } from "@effect/platform-node/NodeClusterSocket"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { SqlClient } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import * as ClusterMetrics from "@effect/cluster/ClusterMetrics"
import { Clock, Config, Data, Duration, Effect, Layer, Metric, Option, Schedule } from "effect"

/**
 * One runner over the SQL database. The address is fixed and runner storage is in memory: the
 * data file is locked to this process, so there is no other runner to coordinate with, and a restart
 * resumes at once instead of waiting for a shard lock to expire.
 */
export const single = ShardingConfig.layer({
  runnerAddress: Option.some(RunnerAddress.make("localhost", 34431)),
  // Our own shutdown drains jobs first; after that nothing is left for the cluster to wait for.
  entityTerminationTimeout: "1 second",
  entityRegistrationTimeout: "1 minute",
  // How soon stored messages re-armed after a storage outage (`rearmStoredMessages`) are delivered.
  entityMessagePollInterval: "1 second"
}).pipe((config) =>
  Sharding.layer.pipe(
    Layer.provideMerge(Runners.layerNoop),
    Layer.provideMerge(SqlMessageStorage.layer),
    Layer.provide([RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
    Layer.provide(config)
  )
)

/**
 * Embedded SQLite, after a storage outage: makes the cluster read its unprocessed messages again.
 * When the runner takes its shards (at start) the cluster clears each unprocessed message's
 * `last_read` mark, and skips a message read within the last 10 minutes; on a full disk that write
 * fails and `@effect/cluster` 0.60 ignores the failure, so a job's workflow stored by the previous
 * process stayed unread for 10 minutes after the restart ("resumed", 0 calls). With one runner (the
 * data file is locked to this process) nothing else reads these messages, and one already being
 * processed is not delivered twice (the entity manager skips requests in progress).
 */
export const rearmStoredMessages: Effect.Effect<void, never, SqlClient.SqlClient> = Effect.gen(
  function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE cluster_messages SET last_read = NULL WHERE processed = 0 AND last_read IS NOT NULL`.pipe(
      Effect.catchAll((error) => Effect.logWarning("could not re-arm the cluster's stored messages", error.message))
    )
  }
)

export const runnerConfig = Config.all({
  host: Config.string("RUNNER_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.integer("RUNNER_PORT").pipe(
    Config.validate({ message: "Expected a port between 1 and 65535", validation: (n) => n >= 1 && n <= 65535 }),
    // Below 32768: ports above are the OS's range for outgoing connections (a database socket once
    // took a runner's port there).
    Config.withDefault(24431)
  ),
  /** How long a dead runner's shards stay locked before survivors take them. */
  lockExpiration: Config.duration("RUNNER_LOCK_EXPIRATION").pipe(Config.withDefault("10 seconds"))
})

/** This runner's name among the instances (its address): keys its shares and probe claims. */
export const runnerId = Effect.map(runnerConfig, (c) => `${c.host}:${c.port}`)

/** Arbitrary, fixed: serializes the cluster's own table creation across instances starting together. */
const CLUSTER_SCHEMA_LOCK_KEY = 7_240_611_002

/**
 * Many runners over PostgreSQL. The sharding config is built here, not read from the environment
 * (`ShardingConfig.layerFromEnv` would take the HTTP server's `HOST`/`PORT` as the runner address).
 */
export const multi = Layer.unwrapEffect(
  Effect.gen(function* () {
    const { host, port, lockExpiration } = yield* runnerConfig
    const config = ShardingConfig.layer({
      runnerAddress: Option.some(RunnerAddress.make(host, port)),
      shardLockExpiration: lockExpiration,
      // @effect/cluster gives each shard-lock statement min(refresh interval, expiration / 3) to answer,
      // and one missed answer drops every shard of the runner. A fixed 2 s refresh capped that deadline
      // at 2 s whatever the operator set (on a loaded 2-core machine a 1 s deadline missed every few
      // seconds and stalled jobs for minutes): the refresh follows RUNNER_LOCK_EXPIRATION instead.
      shardLockRefreshInterval: Duration.divide(lockExpiration, 3).pipe(Option.getOrElse(() => Duration.seconds(2))),
      entityTerminationTimeout: "1 second",
      entityRegistrationTimeout: "1 minute",
      entityReplyPollInterval: "100 millis",
      entityMessagePollInterval: "1 second",
      refreshAssignmentsInterval: "1 second",
      // The health check pings runners, so a dead one is noticed before its heartbeat expires.
      runnerHealthCheckInterval: "2 seconds"
    })
    const storage = Layer.mergeAll(Layer.orDie(SqlMessageStorage.layer), Layer.orDie(SqlRunnerStorage.layer)).pipe(
      Layer.provide(config)
    )
    // Creating the cluster's tables is not atomic in PostgreSQL: instances that start together take
    // turns, holding an advisory lock on one connection while the storage layers create them.
    yield* Effect.scoped(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const connection = yield* sql.reserve
        yield* connection.executeRaw(`SELECT pg_advisory_lock(${CLUSTER_SCHEMA_LOCK_KEY})`, [])
        yield* Effect.addFinalizer(() =>
          Effect.ignore(connection.executeRaw(`SELECT pg_advisory_unlock(${CLUSTER_SCHEMA_LOCK_KEY})`, []))
        )
        yield* Layer.build(storage)
      })
    ).pipe(Effect.orDie)
    const health = RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc), Layer.provide(layerClientProtocol))
    return SocketRunner.layer.pipe(
      Layer.provide([layerSocketServer, layerClientProtocol]),
      Layer.provide(health),
      Layer.provideMerge(storage),
      Layer.provide(config),
      Layer.provide(RpcSerialization.layerMsgPack),
      Layer.orDie
    )
  })
)

/** The workflow engine on the one runner of this process (embedded SQLite). */
export const singleRunnerEngine: Layer.Layer<WorkflowEngine, never, SqlClient.SqlClient> = ClusterWorkflowEngine.layer.pipe(
  Layer.provide(single),
  Layer.orDie
)

/** Stored messages `rearmStale` made readable again. */
export const rearmed = Metric.counter("pp_cluster_messages_rearmed_total", {
  description: "unprocessed cluster messages of this runner's shards whose read mark was cleared because it was stale"
})

/**
 * Many runners: makes the unprocessed stored messages of this runner's shards readable again when
 * they were read long ago. The cluster skips a message read within the last 10 minutes, and when a
 * runner takes a shard it clears the marks of the shard's messages — but `@effect/cluster` 0.60
 * ignores that write's failure or timeout (`resetShards(...).pipe(Effect.ignore,
 * Effect.timeoutOption(...))`), so a message the previous owner had read stays marked and its
 * workflow (a part of a job) waits 10 minutes. Seen once in CI at load ~10: two parts handed to a
 * joining instance never resumed. Every `CLUSTER_MESSAGE_REARM_INTERVAL` (15 s) the marks older than
 * that on shards this runner holds are set back past the 10 minutes and the storage is read. Harmless
 * for a message being processed here: the entity manager skips a request in progress, as after the
 * cluster's own reset. Costs one query per interval while nothing is stale.
 */
const rearmStale = Effect.gen(function* () {
  const sharding = yield* Sharding.Sharding
  const sql = yield* SqlClient.SqlClient
  const every = yield* Config.duration("CLUSTER_MESSAGE_REARM_INTERVAL").pipe(Config.withDefault(Duration.seconds(15)))
  const seconds = Duration.toSeconds(every)
  const parse = Option.liftThrowable(ShardId.ShardId.fromStringEncoded)
  const held = (shardId: string) =>
    Option.exists(parse(shardId), ({ group, id }) => sharding.hasShardId(ShardId.make(group, id)))
  const once = Effect.gen(function* () {
    const stale = yield* sql<{ readonly shard_id: string }>`SELECT DISTINCT shard_id FROM cluster_messages
      WHERE processed = FALSE AND last_read < NOW() - make_interval(secs => ${seconds})`
    const mine = stale.map((row) => row.shard_id).filter(held)
    if (mine.length === 0) return
    // Not NULL: past the cluster's 10 minutes reads the same, and tells this write from the cluster's own.
    const rows = yield* sql`UPDATE cluster_messages SET last_read = NOW() - INTERVAL '1 hour'
      WHERE processed = FALSE AND shard_id IN ${sql.in(mine)} AND last_read < NOW() - make_interval(secs => ${seconds})
      RETURNING id`
    if (rows.length === 0) return
    yield* Metric.incrementBy(rearmed, rows.length)
    yield* Effect.logDebug(`re-armed ${rows.length} stored message(s) read more than ${Duration.format(every)} ago`)
    yield* sharding.pollStorage
  }).pipe(Effect.catchAll((error) => Effect.logWarning("could not re-arm stale cluster messages", error.message)))
  yield* once.pipe(Effect.repeat(Schedule.spaced(every)), Effect.interruptible, Effect.forkScoped)
})

/** The workflow engine on the runners sharing a PostgreSQL database. */
export const runnersEngine: Layer.Layer<WorkflowEngine, never, SqlClient.SqlClient> = Layer.merge(
  ClusterWorkflowEngine.layer,
  Layer.scopedDiscard(Effect.orDie(rearmStale))
).pipe(Layer.provide(multi), Layer.orDie)

/** This runner holds no shard although its database answers: it will not run any job again by itself. */
export class ClusterStalled extends Data.TaggedError("ClusterStalled")<{ readonly message: string }> {}

/** How often the service had to be restarted in-process because its runner stalled. */
export const stalls = Metric.counter("pp_cluster_stalls_total", {
  description: "times this instance restarted its cluster runtime after holding no shard while its database answered"
})

/**
 * Watches for a runner that has lost its shards for good. When the database goes away, the cluster
 * force-releases every shard and takes none back until that release is over, and the release waits
 * until every entity on those shards has closed. Seen with one instance and a job in flight
 * (`@effect/cluster` 0.60.2, PostgreSQL restarted for 5 s): a `JobPart` workflow entity never
 * closes — our activity had ended; the entity's `run` handler, uninterruptible, apparently still
 * waits for the activity's reply, which the closing entity does not send — so once the database was
 * back the runner held 0 shards for as long as it ran, and jobs sent to it waited forever (the
 * "one instance" outage test fails that way without this). This fails with `ClusterStalled` when the runner has held no
 * shard for `CLUSTER_RECOVERY_TIMEOUT` (30 s) while the database answered; `Server.run` then stops
 * the service and starts it again in this process, and the jobs resume as after a restart. Only for
 * a cluster (`Topology`): with the embedded SQLite file there is one runner with in-memory shard locks.
 */
export const watchdog: Effect.Effect<never, ClusterStalled, SqlClient.SqlClient> = Effect.gen(
  function* () {
    const sql = yield* SqlClient.SqlClient
    const limit = Duration.toMillis(
      yield* Config.duration("CLUSTER_RECOVERY_TIMEOUT").pipe(Config.withDefault(Duration.seconds(30)), Effect.orDie)
    )
    // The last moment the runner held shards, or could not have (the database did not answer, or
    // it was starting): only a runner without shards beside a working database counts as stalled.
    let fine = yield* Clock.currentTimeMillis
    const check = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const held = (yield* Metric.value(ClusterMetrics.shards)).value
      if (held > 0n) {
        fine = now
        return
      }
      const answers = yield* sql`SELECT 1`.pipe(Effect.timeout(Duration.seconds(2)), Effect.isSuccess)
      if (!answers) {
        fine = now
        return
      }
      if (now - fine >= limit) {
        return yield* new ClusterStalled({
          message: `this runner has held no shard for ${Duration.format(Duration.millis(now - fine))} while the database answers`
        })
      }
    })
    return yield* check.pipe(Effect.repeat(Schedule.spaced(Duration.seconds(1))), Effect.zipRight(Effect.never))
  }
)
