/**
 * The statements retention (`Retention.ts`) deletes with, each bounded to a batch so no statement or
 * transaction holds the database for long: finished jobs with their item rows, and tracked posts'
 * history past its limit (the cluster's messages: `ClusterMessageTable.ts`). Also the PostgreSQL lock
 * that lets one instance sweep at a time, and SQLite's incremental vacuum. What to delete is decided
 * here; when, and whether a job is followed, is the caller's.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { column, Int, orStoreError, type StoreError } from "./Sql.js"

/** Arbitrary, fixed: the advisory lock an instance holds while it sweeps (PostgreSQL). */
export const SWEEP_LOCK_KEY = 7_240_611_003

/** The statuses of a job that will not change again (`Model.isTerminal`): only these are ever deleted. */
const FINISHED = ["completed", "cancelled"] as const

/** What a job is deleted on: finished before `finishedBefore`, not seen followed since `followedBefore`. */
export interface JobCutoff {
  readonly finishedBefore: number
  readonly followedBefore: number
}

const IdRow = Schema.Struct({ id: Schema.String })
const JobIdRow = Schema.Struct({ jobId: column(Schema.String, "job_id") })
const PostIdRow = Schema.Struct({ postId: column(Schema.String, "post_id") })
const LockRow = Schema.Struct({ locked: Schema.Boolean })
const AutoVacuumRow = Schema.Struct({ auto_vacuum: Int })
const FreelistRow = Schema.Struct({ freelist_count: Int })
const rows = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Schema.Array(schema))

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const finished = sql.in([...FINISHED])

  const deletable = (cutoff: JobCutoff) =>
    sql`finished_at IS NOT NULL AND finished_at < ${cutoff.finishedBefore} AND status IN ${finished}
      AND (followed_at IS NULL OR followed_at < ${cutoff.followedBefore})`

  /** The oldest finished jobs past the cutoff but those in `except`, at most `limit`. */
  const expiredJobs = (cutoff: JobCutoff, limit: number, except: ReadonlyArray<string>) =>
    sql`SELECT id FROM pp_jobs WHERE ${deletable(cutoff)} ${except.length === 0 ? sql`` : sql`AND id NOT IN ${sql.in(except)}`}
      ORDER BY finished_at LIMIT ${limit}`.pipe(
      Effect.flatMap(rows(IdRow)),
      Effect.map((found) => found.map((r) => r.id)),
      orStoreError("listing expired jobs")
    )

  /**
   * Deletes the jobs among `ids` that still match the cutoff (checked again in the statement itself:
   * a job followed in another instance meanwhile carries a fresh `followed_at`), and records them as
   * pending, in one transaction: their items are deleted after, in batches (`dropItems`).
   */
  const dropJobs = (ids: ReadonlyArray<string>, cutoff: JobCutoff, at: number) =>
    (ids.length === 0
      ? Effect.succeed<ReadonlyArray<string>>([])
      : Effect.gen(function* () {
          const gone = yield* sql`DELETE FROM pp_jobs WHERE id IN ${sql.in(ids)} AND ${deletable(cutoff)} RETURNING id`.pipe(
            Effect.flatMap(rows(IdRow)),
            Effect.map((found) => found.map((r) => r.id))
          )
          if (gone.length > 0) {
            yield* sql`INSERT INTO pp_retention_pending ${sql.insert(gone.map((id) => ({ job_id: id, deleted_at: at })))} ON CONFLICT DO NOTHING`
          }
          return gone
        }).pipe(sql.withTransaction)
    ).pipe(orStoreError("deleting expired jobs"))

  /** Deleted jobs whose items may still be stored (a sweep cut short leaves some). */
  const pendingJobs = (limit: number) =>
    sql`SELECT job_id FROM pp_retention_pending ORDER BY deleted_at, job_id LIMIT ${limit}`.pipe(
      Effect.flatMap(rows(JobIdRow)),
      Effect.map((found) => found.map((r) => r.jobId)),
      orStoreError("listing deleted jobs")
    )

  /** Deletes at most `limit` item rows of a deleted job; how many it deleted. */
  const dropItems = (jobId: string, limit: number) =>
    sql`DELETE FROM pp_job_items WHERE job_id = ${jobId}
      AND idx IN (SELECT idx FROM pp_job_items WHERE job_id = ${jobId} ORDER BY idx LIMIT ${limit}) RETURNING idx`.pipe(
      Effect.map((deleted) => deleted.length),
      orStoreError("deleting a deleted job's items")
    )

  /** The job's items are all gone. */
  const clearPending = (jobId: string) =>
    sql`DELETE FROM pp_retention_pending WHERE job_id = ${jobId}`.pipe(Effect.asVoid, orStoreError("clearing a deleted job"))

  /** Marks the jobs as followed now (those finished: a running job is never deleted, and its row is the writer's). */
  const touchFollowed = (ids: ReadonlyArray<string>, at: number) =>
    ids.length === 0
      ? Effect.void
      : sql`UPDATE pp_jobs SET followed_at = ${at} WHERE id IN ${sql.in(ids)} AND finished_at IS NOT NULL`.pipe(
          Effect.asVoid,
          orStoreError("marking followed jobs")
        )

  /** Posts with more than `keep` history rows, at most `limit`. */
  const postsOverLimit = (keep: number, limit: number) =>
    sql`SELECT post_id FROM pp_post_interactions GROUP BY post_id HAVING COUNT(*) > ${keep} LIMIT ${limit}`.pipe(
      Effect.flatMap(rows(PostIdRow)),
      Effect.map((found) => found.map((r) => r.postId)),
      orStoreError("listing posts over their history limit")
    )

  /** Deletes at most `limit` of the post's history rows past its newest `keep`; how many it deleted. */
  const trimPostHistory = (postId: string, keep: number, limit: number) =>
    sql`DELETE FROM pp_post_interactions WHERE post_id = ${postId} AND job_id IN (
      SELECT job_id FROM pp_post_interactions WHERE post_id = ${postId}
      ORDER BY fetched_at DESC, job_id DESC LIMIT ${limit} OFFSET ${keep}
    ) RETURNING job_id`.pipe(
      Effect.map((deleted) => deleted.length),
      orStoreError("trimming a post's history")
    )

  /**
   * Runs `self` while holding the sweep lock, or not at all (`None`) when another instance holds it.
   * PostgreSQL: a session advisory lock on a connection reserved for the sweep, released when it
   * ends (or when that connection dies). SQLite: the data file belongs to this process alone.
   */
  const whileLocked = <A, R>(self: Effect.Effect<A, StoreError, R>) =>
    sql.onDialectOrElse({
      pg: () =>
        Effect.scoped(
          Effect.gen(function* () {
            const connection = yield* sql.reserve
            const [row] = yield* connection
              .execute(`SELECT pg_try_advisory_lock(${SWEEP_LOCK_KEY}) AS locked`, [], undefined)
              .pipe(Effect.flatMap(rows(LockRow)))
            if (row?.locked !== true) return Option.none<A>()
            yield* Effect.addFinalizer(() =>
              Effect.ignore(connection.execute(`SELECT pg_advisory_unlock(${SWEEP_LOCK_KEY})`, [], undefined))
            )
            return Option.some(yield* self)
          })
        ).pipe(orStoreError("taking the sweep lock")),
      orElse: () => Effect.map(self, Option.some)
    })

  /**
   * SQLite, when the file was set up for it (`PRAGMA auto_vacuum = INCREMENTAL`, README): gives at
   * most `limit` free pages back to the file system, in one transaction; how many. Otherwise (and on
   * PostgreSQL, autovacuum's business) nothing: SQLite reuses free pages for new rows. One page per
   * statement: the driver (better-sqlite3) steps a statement that returns no rows once, and
   * `incremental_vacuum` frees one page per step.
   */
  const releaseFreePages = (limit: number) =>
    sql.onDialectOrElse({
      sqlite: () =>
        Effect.gen(function* () {
          const [mode] = yield* sql`PRAGMA auto_vacuum`.pipe(Effect.flatMap(rows(AutoVacuumRow)))
          if (mode?.auto_vacuum !== 2) return 0
          const [free] = yield* sql`PRAGMA freelist_count`.pipe(Effect.flatMap(rows(FreelistRow)))
          const pages = Math.min(limit, free?.freelist_count ?? 0)
          if (pages === 0) return 0
          yield* Effect.repeatN(sql`PRAGMA incremental_vacuum(1)`, pages - 1).pipe(sql.withTransaction)
          return pages
        }).pipe(orStoreError("incremental vacuum")),
      orElse: () => Effect.succeed(0)
    })

  return {
    expiredJobs,
    dropJobs,
    pendingJobs,
    dropItems,
    clearPending,
    touchFollowed,
    postsOverLimit,
    trimPostHistory,
    whileLocked,
    releaseFreePages
  } as const
})

export type RetentionTable = Effect.Effect.Success<typeof make>
