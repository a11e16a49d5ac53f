/**
 * Retention: a background fiber that deletes what the service no longer needs, so a service that
 * runs for months keeps a bounded database. Finished jobs (completed or cancelled) older than
 * `JOB_RETENTION` go with their item rows (a job's events are its item rows, replayed); a tracked
 * post keeps its latest counts and its newest `POST_HISTORY_LIMIT` history rows; the cluster's
 * messages of finished workflows older than the retention go too. Everything is deleted in batches
 * of at most `RETENTION_BATCH_SIZE` rows per statement, each its own transaction, yielding between
 * them, so requests and result writes keep being served during a sweep.
 *
 * Never deleted: a job not finished, or one someone follows (an open event stream or a waiter). Each
 * process knows its own followers (`JobEvents`) and skips those jobs; in a cluster each instance also
 * stamps the finished jobs followed in it (`followed_at`, within `FOLLOW_CHECK` of a follow starting
 * and every `FOLLOW_REFRESH` after), and a sweep in any instance skips a job stamped within
 * `FOLLOW_LEASE` (checked again in the DELETE itself). What is left: a follow that starts in another
 * instance less than `FOLLOW_CHECK` before the DELETE of a job past its retention may find the job
 * gone (404) or, already reading, its items going.
 * In a cluster one instance sweeps at a time: a PostgreSQL advisory lock (`RetentionTable.whileLocked`)
 * rather than `@effect/cluster`'s `Singleton`, because the lock needs no shard (a sweep still runs
 * while the cluster rebalances or stalls) and is released by the database if the holder dies. Two
 * sweeps that overlapped anyway (the lock's connection lost mid-sweep) would lose nothing kept: the
 * job DELETE re-checks its conditions, and the rest is deleted only once it can no longer change.
 */
import { Array as Arr, Clock, Config, Duration, Effect, Metric, Option, Schedule } from "effect"
import { JobRunner } from "./JobRunner.js"
import type { StoreError } from "./store/Sql.js"
import * as ClusterMessageTable from "./store/ClusterMessageTable.js"
import * as PostTable from "./store/PostTable.js"
import * as RetentionTable from "./store/RetentionTable.js"
import { Topology } from "./Topology.js"

/** How often an instance re-stamps the finished jobs followed in it. */
const FOLLOW_REFRESH = Duration.seconds(10)
/** A job stamped as followed within this long is kept: several refreshes, so one missed stamp does not matter. */
const FOLLOW_LEASE = Duration.seconds(60)
/** How often an instance looks for follows that started since its last stamp. */
const FOLLOW_CHECK = Duration.seconds(1)
/** The first sweep after start (or after the interval, if shorter): soon, but out of the start-up rush. */
const FIRST_SWEEP = Duration.minutes(1)

export const settings = Config.all({
  /** Finished jobs older than this are deleted (default 7 days). */
  retention: Config.duration("JOB_RETENTION").pipe(
    Config.validate({ message: "Expected a duration of at least 1 millisecond", validation: (d) => Duration.toMillis(d) >= 1 }),
    Config.withDefault(Duration.days(7))
  ),
  /** Time between sweeps (default 10 minutes). */
  interval: Config.duration("RETENTION_INTERVAL").pipe(
    Config.validate({ message: "Expected a duration of at least 1 millisecond", validation: (d) => Duration.toMillis(d) >= 1 }),
    Config.withDefault(Duration.minutes(10))
  ),
  /** History rows kept per tracked post, newest first (default 100). */
  postHistoryLimit: PostTable.historyLimit,
  /** Most rows one statement deletes (default 500). */
  batchSize: Config.integer("RETENTION_BATCH_SIZE").pipe(
    Config.validate({ message: "Expected an integer between 1 and 10000", validation: (n) => n >= 1 && n <= 10_000 }),
    Config.withDefault(500)
  )
})

export type Settings = Config.Config.Success<typeof settings>

/** What one sweep deleted, by table; `skipped` when another sweep was running (here or in another instance). */
export interface SweepReport {
  readonly skipped: boolean
  readonly jobs: number
  readonly items: number
  readonly postHistory: number
  readonly clusterMessages: number
  readonly clusterReplies: number
}

const nothing: SweepReport = { skipped: false, jobs: 0, items: 0, postHistory: 0, clusterMessages: 0, clusterReplies: 0 }

/** Rows deleted by retention, tagged by table. */
export const deletedRows = Metric.counter("pp_retention_deleted_rows_total", {
  description: "rows deleted by retention sweeps, by table",
  incremental: true
})
/** Sweeps, tagged by outcome: `done`, `skipped` (another instance held the lock) or `failed`. */
export const sweeps = Metric.counter("pp_retention_sweeps_total", { description: "retention sweeps, by outcome", incremental: true })

/**
 * Between two batches: back to Node's event loop (sockets, timers), not only to other fibers. The
 * SQLite client is synchronous, and `Effect.yieldNow` alone let a sweep of 100,000 item rows hold
 * the process for its whole 6.8 s: a reader that pinged every 5 ms was answered once.
 */
const betweenBatches = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const count = (table: string, n: number) => (n > 0 ? Metric.incrementBy(Metric.tagged(deletedRows, "table", table), n) : Effect.void)

/**
 * Runs `sweep` after `first`, then every `interval` until interrupted. A sweep that fails is logged
 * and the next one runs on time: an outage must not end retention for the life of the process.
 */
export const periodically = <E>(
  sweep: Effect.Effect<unknown, E>,
  options: { readonly first: Duration.DurationInput; readonly interval: Duration.DurationInput }
): Effect.Effect<never> =>
  Effect.sleep(options.first).pipe(
    Effect.zipRight(
      sweep.pipe(
        Effect.catchAllCause((cause) =>
          Effect.zipRight(Metric.increment(Metric.tagged(sweeps, "outcome", "failed")), Effect.logWarning("retention sweep failed", cause))
        ),
        Effect.repeat(Schedule.spaced(options.interval))
      )
    ),
    Effect.zipRight(Effect.never)
  )

/**
 * One sweep over the database of the `SqlClient`: `skipped` when a sweep is already running in this
 * process or (PostgreSQL) in another instance. `isFollowed` tells the jobs followed in this process.
 */
export const makeSweep = (options: { readonly settings: Settings; readonly isFollowed: (jobId: string) => boolean }) =>
  Effect.gen(function* () {
    const config = options.settings
    const table = yield* RetentionTable.make
    const workflows = yield* ClusterMessageTable.make
    const batch = config.batchSize
    const local = yield* Effect.makeSemaphore(1)

    /** Deletes expired jobs a batch at a time, then the items of every deleted job. */
    const sweepJobs = (now: number) =>
      Effect.gen(function* () {
        const cutoff: RetentionTable.JobCutoff = {
          finishedBefore: now - Duration.toMillis(config.retention),
          followedBefore: now - Duration.toMillis(FOLLOW_LEASE)
        }
        let jobs = 0
        // Jobs followed here: skipped, and left out of the next pages.
        const kept: Array<string> = []
        for (;;) {
          const candidates = yield* table.expiredJobs(cutoff, batch, kept)
          const free = candidates.filter((id) => !options.isFollowed(id))
          kept.push(...candidates.filter((id) => options.isFollowed(id)))
          const gone = yield* table.dropJobs(free, cutoff, now)
          jobs += gone.length
          yield* count("pp_jobs", gone.length)
          if (candidates.length < batch) break
          yield* betweenBatches
        }
        let items = 0
        for (;;) {
          const pending = yield* table.pendingJobs(batch)
          for (const jobId of pending) {
            for (;;) {
              const n = yield* table.dropItems(jobId, batch)
              items += n
              yield* count("pp_job_items", n)
              yield* betweenBatches
              if (n < batch) break
            }
            yield* table.clearPending(jobId)
          }
          if (pending.length < batch) break
        }
        return { jobs, items }
      })

    const sweepPosts = Effect.gen(function* () {
      let trimmed = 0
      for (;;) {
        const posts = yield* table.postsOverLimit(config.postHistoryLimit, batch)
        for (const postId of posts) {
          for (;;) {
            const n = yield* table.trimPostHistory(postId, config.postHistoryLimit, batch)
            trimmed += n
            yield* count("pp_post_interactions", n)
            yield* betweenBatches
            if (n < batch) break
          }
        }
        if (posts.length < batch) break
      }
      return trimmed
    })

    /**
     * Finished workflows' messages: the entities of the oldest `batch` messages at a time, each
     * entity's messages deleted together (a handful per entity: a transaction stays near `batch` rows).
     */
    const sweepClusterMessages = (now: number) =>
      Effect.gen(function* () {
        const before = ClusterMessageTable.snowflakeAt(now - Duration.toMillis(config.retention))
        let after = Option.none<string>()
        let messages = 0
        let replies = 0
        for (;;) {
          const page = yield* workflows.expiredEntities(before, after, batch)
          for (const entities of Arr.chunksOf(page.expired, Math.max(1, Math.floor(batch / 10)))) {
            const dropped = yield* workflows.dropEntities(entities)
            messages += dropped.messages
            replies += dropped.replies
            yield* count("cluster_messages", dropped.messages)
            yield* count("cluster_replies", dropped.replies)
            yield* betweenBatches
          }
          if (Option.isNone(page.next)) break
          after = page.next
          yield* betweenBatches
        }
        return { messages, replies }
      })

    const releaseFreePages = Effect.gen(function* () {
      let pages = 0
      for (;;) {
        const n = yield* table.releaseFreePages(batch)
        pages += n
        if (n < batch) return pages
        yield* betweenBatches
      }
    })

    const sweepOnce: Effect.Effect<SweepReport, StoreError> = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const { items, jobs } = yield* sweepJobs(now)
      const postHistory = yield* sweepPosts
      const cluster = yield* sweepClusterMessages(now)
      const report: SweepReport = { skipped: false, jobs, items, postHistory, clusterMessages: cluster.messages, clusterReplies: cluster.replies }
      if (jobs + items + postHistory + cluster.messages + cluster.replies > 0) {
        const pagesReleased = yield* releaseFreePages
        yield* Effect.logInfo("retention: deleted expired rows").pipe(Effect.annotateLogs({ ...report, pagesReleased }))
      } else {
        yield* Effect.logDebug("retention: nothing to delete")
      }
      return report
    })

    /** One sweep now, unless one is running here or (in a cluster) in another instance: then `skipped`. */
    const sweep: Effect.Effect<SweepReport, StoreError> = local
      .withPermitsIfAvailable(1)(table.whileLocked(sweepOnce))
      .pipe(
        Effect.map(Option.flatten),
        Effect.flatMap(
          Option.match({
            onNone: () =>
              Effect.as(
                Effect.zipRight(Metric.increment(Metric.tagged(sweeps, "outcome", "skipped")), Effect.logDebug("retention: another sweep is running")),
                { ...nothing, skipped: true }
              ),
            onSome: (report) => Effect.as(Metric.increment(Metric.tagged(sweeps, "outcome", "done")), report)
          })
        ),
        Effect.annotateLogs({ service: "retention", retention: Duration.format(config.retention) })
      )

    return sweep
  })

export class Retention extends Effect.Service<Retention>()("parallel-processor/Retention", {
  scoped: Effect.gen(function* () {
    const config = yield* settings
    const table = yield* RetentionTable.make
    const runner = yield* JobRunner
    const topology = yield* Topology
    const followers = runner.events
    const sweep = yield* makeSweep({ settings: config, isFollowed: followers.isFollowed })
    // In a cluster, the jobs followed here are stamped at once and then every refresh, so a sweep in
    // another instance keeps them. Alone, the sweep asks `followers` directly.
    if (topology.mode === "cluster") {
      let stamped = new Set<string>()
      let stampedAt = 0
      const stamp = Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const followed = followers.followedJobs()
        const due = now - stampedAt >= Duration.toMillis(FOLLOW_REFRESH)
        const fresh = due ? followed : followed.filter((id) => !stamped.has(id))
        if (fresh.length > 0) yield* table.touchFollowed(fresh, now)
        // Every tick, not only after a write: a job that stopped being followed (a sync request that
        // waited for it while it ran, when there was nothing to stamp yet) and is followed again later
        // is new again and stamped at once, not at the next refresh.
        stamped = new Set(followed)
        if (due) stampedAt = now
      }).pipe(Effect.catchAll((error) => Effect.logDebug(`retention: could not stamp followed jobs: ${error.message}`)))
      yield* stamp.pipe(Effect.repeat(Schedule.spaced(FOLLOW_CHECK)), Effect.interruptible, Effect.forkScoped)
    }

    yield* periodically(sweep, { first: Duration.min(FIRST_SWEEP, config.interval), interval: config.interval }).pipe(
      Effect.interruptible,
      Effect.forkScoped
    )

    return { sweep, settings: config } as const
  })
}) {}
