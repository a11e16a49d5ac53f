/**
 * The statements retention (`Retention.ts`) deletes with, each bounded to a batch so no statement or
 * transaction holds the database for long: finished jobs with their item rows, tracked posts' history
 * past its limit, and the cluster's messages of finished workflows. Also the PostgreSQL lock that lets
 * one instance sweep at a time, and SQLite's incremental vacuum. What to delete is decided here;
 * when and whether a job is followed is the caller's.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { column, Int, orStoreError, type StoreError } from "./Sql.js"

/** Arbitrary, fixed: the advisory lock an instance holds while it sweeps (PostgreSQL). */
export const SWEEP_LOCK_KEY = 7_240_611_003

/** The statuses of a job that will not change again (`Model.isTerminal`): only these are ever deleted. */
const FINISHED = ["completed", "cancelled"] as const

/** `@effect/cluster`'s Snowflake ids count milliseconds from this moment in their top 42 bits. */
const SNOWFLAKE_EPOCH_MS = Date.UTC(2025, 0, 1)

/** The smallest cluster message id made at `ms` or later: messages with a smaller id are older. */
export const snowflakeAt = (ms: number): bigint => BigInt(Math.max(0, Math.floor(ms) - SNOWFLAKE_EPOCH_MS)) << 22n

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
/** Message ids are 64-bit: read as text (a JavaScript number would round them). */
const MessageIdRow = Schema.Struct({
  id: Schema.String.pipe(Schema.pattern(/^\d+$/)),
  entityType: column(Schema.String, "entity_type"),
  entityId: column(Schema.String, "entity_id")
})
const EntityRow = Schema.Struct({
  entityType: column(Schema.String, "entity_type"),
  entityId: column(Schema.String, "entity_id"),
  runPayload: column(Schema.NullOr(Schema.String), "run_payload"),
  done: Int
})
const UnfinishedRow = Schema.Struct({ entityType: column(Schema.String, "entity_type"), entityId: column(Schema.String, "entity_id") })

/** The part of a workflow's `run` payload that names the workflow that started it (`@effect/workflow`'s child executions). */
const RunPayload = Schema.parseJson(
  Schema.Struct({
    "~@effect/workflow/parent": Schema.optional(Schema.Struct({ workflowName: Schema.String, executionId: Schema.String }))
  })
)
const decodeRunPayload = Schema.decodeUnknownOption(RunPayload)

/** One cluster entity (a workflow execution): its messages are deleted together. */
export interface Entity {
  readonly entityType: string
  readonly entityId: string
}

const entityKey = (e: Entity) => `${e.entityType}\u0000${e.entityId}`

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
   * The cluster's tables are created by `@effect/cluster` after our migrations run (on a new
   * database), so the index retention looks entities up by is made here, once per process, before
   * the first cluster sweep: without it every lookup below read the whole table. PostgreSQL builds
   * it without blocking the cluster's writes (CONCURRENTLY, outside a transaction).
   */
  let indexed = false
  const ensureEntityIndex = Effect.suspend(() =>
    indexed
      ? Effect.void
      : sql
          .onDialectOrElse({
            pg: () => sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS pp_cluster_messages_entity ON cluster_messages (entity_id)`,
            orElse: () => sql`CREATE INDEX IF NOT EXISTS pp_cluster_messages_entity ON cluster_messages (entity_id)`
          })
          .pipe(
            Effect.tap(() => Effect.sync(() => (indexed = true))),
            Effect.asVoid,
            orStoreError("indexing the cluster's messages")
          )
  )

  /**
   * The entities (workflow executions) of the oldest messages older than `before` and after message
   * `after`, reading at most `limit` messages in id order (the primary key: ids grow with time), with
   * what decides whether they may go: whether every message is processed (each request has its
   * final reply), whether the newest is older than `before`, and the payload of the `run` request,
   * which names a parent workflow, if any.
   */
  const entitiesOfOldMessages = (before: bigint, after: Option.Option<string>, limit: number) =>
    Effect.gen(function* () {
      const oldest = yield* sql`SELECT CAST(id AS TEXT) AS id, entity_type, entity_id FROM cluster_messages
        WHERE id < ${sql.literal(before.toString())}
        ${Option.match(after, { onNone: () => sql``, onSome: (id) => sql`AND id > ${sql.literal(id)}` })}
        ORDER BY id LIMIT ${limit}`.pipe(Effect.flatMap(rows(MessageIdRow)))
      const last = oldest[oldest.length - 1]
      const next = oldest.length < limit || last === undefined ? Option.none<string>() : Option.some(last.id)
      if (oldest.length === 0) return { entities: [], next }
      const entities = yield* sql`SELECT entity_type, entity_id,
          MAX(CASE WHEN kind = 0 AND tag = 'run' THEN payload END) AS run_payload,
          CASE WHEN MAX(id) < ${sql.literal(before.toString())} AND MIN(CASE WHEN processed THEN 1 ELSE 0 END) = 1 THEN 1 ELSE 0 END AS done
        FROM cluster_messages WHERE entity_id IN ${sql.in([...new Set(oldest.map((m) => m.entityId))])}
        GROUP BY entity_type, entity_id`.pipe(Effect.flatMap(rows(EntityRow)))
      return { entities, next }
    })

  /** Of these entities, those with a message not yet processed (a workflow still running). */
  const unfinishedOf = (entities: ReadonlyArray<Entity>) =>
    entities.length === 0
      ? Effect.succeed(new Set<string>())
      : sql`SELECT DISTINCT entity_type, entity_id FROM cluster_messages
          WHERE entity_id IN ${sql.in(entities.map((e) => e.entityId))} AND NOT processed`.pipe(
          Effect.flatMap(rows(UnfinishedRow)),
          Effect.map((found) => new Set(found.map(entityKey)))
        )

  const parentOf = (runPayload: string | null): Option.Option<Entity> =>
    Option.fromNullable(runPayload).pipe(
      Option.flatMap(decodeRunPayload),
      Option.flatMap((payload) => Option.fromNullable(payload["~@effect/workflow/parent"])),
      Option.map((parent) => ({ entityType: `Workflow/${parent.workflowName}`, entityId: parent.executionId }))
    )

  /**
   * One page of cluster entities that may go (`next`: where the following page starts): finished
   * and older than `before`, and a child workflow (a job's part) only once its parent has finished
   * too, since a parent that runs again replays its children from their stored replies, and a child
   * whose messages are gone would run again.
   */
  const expiredEntities = (before: bigint, after: Option.Option<string>, limit: number) =>
    Effect.gen(function* () {
      yield* ensureEntityIndex
      const { entities, next } = yield* entitiesOfOldMessages(before, after, limit)
      const finished = entities.filter((e) => e.done === 1)
      const running = yield* unfinishedOf(finished.flatMap((e) => Option.toArray(parentOf(e.runPayload))))
      const expired = finished.filter((e) =>
        Option.match(parentOf(e.runPayload), { onNone: () => true, onSome: (parent) => !running.has(entityKey(parent)) })
      )
      return { expired: expired.map((e): Entity => ({ entityType: e.entityType, entityId: e.entityId })), next }
    }).pipe(orStoreError("listing finished workflows"))

  /** Deletes the entities' messages and replies in one transaction; how many of each. */
  const dropEntities = (entities: ReadonlyArray<Entity>) =>
    (entities.length === 0
      ? Effect.succeed({ messages: 0, replies: 0 })
      : Effect.gen(function* () {
          const keys = new Set(entities.map(entityKey))
          const found = yield* sql`SELECT CAST(id AS TEXT) AS id, entity_type, entity_id FROM cluster_messages
            WHERE entity_id IN ${sql.in(entities.map((e) => e.entityId))}`.pipe(Effect.flatMap(rows(MessageIdRow)))
          const mine = found.filter((m) => keys.has(entityKey(m)))
          if (mine.length === 0) return { messages: 0, replies: 0 }
          // The ids are checked digits (MessageIdRow): written as literals, compared as the 64-bit integers they are.
          const ids = sql.literal(mine.map((m) => m.id).join(","))
          const replies = yield* sql`DELETE FROM cluster_replies WHERE request_id IN (${ids}) RETURNING kind`
          const messages = yield* sql`DELETE FROM cluster_messages WHERE id IN (${ids}) RETURNING kind`
          return { messages: messages.length, replies: replies.length }
        }).pipe(sql.withTransaction)
    ).pipe(orStoreError("deleting finished workflows' messages"))

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
    expiredEntities,
    dropEntities,
    whileLocked,
    releaseFreePages
  } as const
})

export type RetentionTable = Effect.Effect.Success<typeof make>
