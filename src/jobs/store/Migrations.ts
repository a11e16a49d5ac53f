/**
 * The store's tables as numbered migrations, run by `@effect/sql`'s `Migrator` when the store starts
 * (its record of what ran is the `pp_migrations` table; the cluster and workflow libraries keep their
 * own tables and their own record, untouched here).
 *
 * Migrations 1–4 are the schema as it stood before it was numbered, one per concern, each written
 * with IF NOT EXISTS: a data file or database from that time holds these tables but no record of
 * migrations, and its first start on this code adopts them as they are. Later migrations change the
 * schema in plain statements, and a new one is only ever appended (never edited once released).
 *
 * The dialect-neutral `Migrator.make` is used, not `SqliteMigrator`/`PgMigrator`: those are the same
 * migrator plus a schema dump through the `sqlite3`/`pg_dump` command line tools, which needs a
 * schema directory, the platform's file system and a command executor, and is not used here.
 */
import { SqlClient } from "@effect/sql"
import * as Migrator from "@effect/sql/Migrator"
import { Effect } from "effect"
import { orStoreError } from "./Sql.js"

/** Arbitrary, fixed: the advisory lock key that serializes schema changes across instances. */
export const SCHEMA_LOCK_KEY = 7_240_611_001

/** Where the migrator records which migrations ran. */
export const MIGRATIONS_TABLE = "pp_migrations"

const statements = (...ddl: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(ddl, (statement) => sql.unsafe(statement), { discard: true }))

/** Jobs with their inputs, and one row per finished item (keyed by job + index: stored once). */
const jobsAndItems = statements(
  `CREATE TABLE IF NOT EXISTS pp_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    inputs TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    total INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    next_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
  )`,
  `CREATE INDEX IF NOT EXISTS pp_jobs_created ON pp_jobs (created_at)`,
  `CREATE INDEX IF NOT EXISTS pp_jobs_status ON pp_jobs (status)`,
  `CREATE TABLE IF NOT EXISTS pp_job_items (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, idx)
  )`,
  `CREATE INDEX IF NOT EXISTS pp_job_items_seq ON pp_job_items (job_id, seq)`
)

/** Tracked posts with their latest interaction counts, and each job's counts as history. */
const trackedPosts = statements(
  `CREATE TABLE IF NOT EXISTS pp_posts (
    post_id TEXT PRIMARY KEY,
    article_id TEXT,
    kol_serial TEXT NOT NULL,
    stock_code TEXT,
    content TEXT,
    source TEXT NOT NULL,
    job_id TEXT,
    interactions TEXT,
    interactions_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS pp_post_interactions (
    post_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (post_id, job_id)
  )`
)

/** What instances sharing a PostgreSQL database coordinate through (unused, but created, on SQLite). */
const coordination = statements(
  `CREATE TABLE IF NOT EXISTS pp_gate_claims (
    gate TEXT NOT NULL,
    runner TEXT NOT NULL,
    claim INTEGER NOT NULL,
    wants INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (gate, runner)
  )`,
  `CREATE TABLE IF NOT EXISTS pp_breakers (
    breaker TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    open_until BIGINT NOT NULL,
    probe_holder TEXT,
    probe_expires BIGINT,
    updated_at BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS pp_upstreams (
    upstream TEXT PRIMARY KEY,
    cooldown_until BIGINT NOT NULL,
    settings TEXT,
    settings_at BIGINT NOT NULL
  )`
)

/** One row, rewritten by every probe write (StorageHealth): whether the database takes writes. */
const storageProbe = statements(
  `CREATE TABLE IF NOT EXISTS pp_storage_probe (
    id TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL
  )`
)

/**
 * Retention (`Retention.ts`): finished jobs are found by their finish time; a job followed in some
 * instance carries the moment it was last seen followed (`followed_at`), so the instance that sweeps
 * keeps it; a job whose row is gone but whose items are still being deleted (in batches, across
 * transactions) is remembered in `pp_retention_pending`, so a sweep cut short finishes it later; a
 * post's history is trimmed newest first.
 */
const retention = statements(
  `CREATE INDEX IF NOT EXISTS pp_jobs_finished ON pp_jobs (finished_at)`,
  `ALTER TABLE pp_jobs ADD COLUMN followed_at BIGINT`,
  `CREATE TABLE IF NOT EXISTS pp_retention_pending (
    job_id TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
  )`,
  `CREATE INDEX IF NOT EXISTS pp_post_interactions_fetched ON pp_post_interactions (post_id, fetched_at)`
)

export const loader = Migrator.fromRecord({
  "1_jobs_and_items": jobsAndItems,
  "2_tracked_posts": trackedPosts,
  "3_coordination": coordination,
  "4_storage_probe": storageProbe,
  "5_retention": retention
})

const runMigrator = Migrator.make({})({ loader, table: MIGRATIONS_TABLE })

/**
 * Brings the schema up to date; returns the migrations that ran (none when it already was).
 *
 * On PostgreSQL, instances starting together take turns: the migrator's own lock (LOCK TABLE on its
 * record) only works once that table exists, and CREATE TABLE IF NOT EXISTS is not atomic there, so
 * the whole run holds a session advisory lock on a connection of its own. The key is the one the
 * store took before migrations, so an older instance starting meanwhile waits too.
 */
export const migrate = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.onDialectOrElse({
    pg: () =>
      Effect.scoped(
        Effect.gen(function* () {
          const connection = yield* sql.reserve
          yield* connection.executeRaw(`SELECT pg_advisory_lock(${SCHEMA_LOCK_KEY})`, [])
          yield* Effect.addFinalizer(() =>
            Effect.ignore(connection.executeRaw(`SELECT pg_advisory_unlock(${SCHEMA_LOCK_KEY})`, []))
          )
          return yield* runMigrator
        })
      ),
    orElse: () => runMigrator
  })
}).pipe(orStoreError("creating tables"))

/**
 * The migrated schema, as a service the stores depend on: built once per layer graph (layers are
 * shared by reference), so the job store and the coordination store do not migrate twice.
 */
export class StoreSchema extends Effect.Service<StoreSchema>()("parallel-processor/StoreSchema", {
  effect: Effect.map(migrate, (ran) => ({ ran }))
}) {}
