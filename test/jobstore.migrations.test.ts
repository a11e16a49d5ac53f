/**
 * The store's numbered migrations (src/jobs/store/Migrations.ts) on both dialects. A data file or
 * database written before migrations existed (test/fixtures/jobstore-v0.sql: the tables exactly as
 * that store created them, with a finished job, its items, tracked posts and coordination rows) is
 * adopted on first start without losing a row, and reads back as that store wrote it; a fresh one
 * gets the same tables; a second start runs nothing; instances starting together on an empty
 * PostgreSQL database take turns.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { JobStore, viewOf } from "../src/jobs/JobStore.js"
import { CoordinationStore } from "../src/jobs/store/Coordination.js"
import { MIGRATIONS_TABLE, migrate } from "../src/jobs/store/Migrations.js"
import { createDatabase, Postgres } from "./support/postgres.js"

const fixture = fs
  .readFileSync(new URL("./fixtures/jobstore-v0.sql", import.meta.url), "utf8")
  .split(/;\s*\n\s*\n/)
  .map((block) => block.split("\n").filter((line) => !line.startsWith("--")).join("\n").trim().replace(/;$/, ""))
  .filter((statement) => statement.length > 0)

const tables = ["pp_jobs", "pp_job_items", "pp_posts", "pp_post_interactions", "pp_gate_claims", "pp_breakers", "pp_upstreams", "pp_storage_probe"]

const Count = Schema.Struct({ n: Schema.Union(Schema.Number, Schema.NumberFromString) })
const rowCounts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const counts: Record<string, number> = {}
  for (const table of tables) {
    const [row] = yield* sql.unsafe(`SELECT COUNT(*) AS n FROM ${table}`).pipe(Effect.flatMap(Schema.decodeUnknown(Schema.Array(Count))))
    counts[table] = row?.n ?? -1
  }
  return counts
})

const recorded = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(`SELECT migration_id, name FROM ${MIGRATIONS_TABLE} ORDER BY migration_id`).pipe(
    Effect.flatMap(Schema.decodeUnknown(Schema.Array(Schema.Struct({ migration_id: Schema.Number, name: Schema.String }))))
  )
)

const allMigrations = [
  { migration_id: 1, name: "jobs_and_items" },
  { migration_id: 2, name: "tracked_posts" },
  { migration_id: 3, name: "coordination" },
  { migration_id: 4, name: "storage_probe" },
  { migration_id: 5, name: "retention" }
]

const iso = (ms: number) => new Date(ms).toISOString()
const p2 = { views: 10, likes: 2, comments: 1, shares: 0, engagementRate: 0.3 }

/** Everything the fixture holds, read through the new store as the old one wrote it. */
const readsBack = Effect.gen(function* () {
  const store = yield* JobStore
  const coordination = yield* CoordinationStore

  const done = yield* store.getJob("job-done")
  expect(done).toEqual({
    id: "job-done",
    kind: "interactions",
    status: "completed",
    options: { maxConcurrent: 4, timeoutSeconds: 30, priority: "high" },
    idempotencyKey: "key-1",
    requestHash: "hash-1",
    total: 3,
    createdAt: 1_764_000_000_000,
    startedAt: 1_764_000_000_100,
    finishedAt: 1_764_000_002_500,
    cancelRequested: false
  })
  if (done === undefined) return
  const counts = yield* store.counts(done)
  expect(counts).toEqual({ total: 3, completed: 3, succeeded: 2, failed: 1, cancelled: 0, skipped: 0 })
  expect(viewOf(done, counts)).toMatchObject({ success: false, durationMs: 2_400, createdAt: iso(1_764_000_000_000) })
  expect(yield* store.inputsOf("job-done")).toEqual([
    { postId: "p1", articleId: "a1", kolSerial: "k1" },
    { postId: "p2", articleId: "a2", kolSerial: "k1" },
    { postId: "p3", articleId: "a3", kolSerial: "k2" }
  ])
  const items = yield* store.items("job-done")
  expect(items.map((i) => [i.index, i.seq])).toEqual([[1, 0], [0, 1], [2, 2]])
  expect(items[0]?.result).toEqual({ index: 1, id: "p2", status: "succeeded", value: p2, attempts: 2, durationMs: 120 })
  expect(items[2]?.result).toEqual({
    index: 2,
    id: "p3",
    status: "failed",
    error: { type: "rate_limited", message: "429", retryable: true, retryAfterMs: 5000 },
    attempts: 3,
    durationMs: 900
  })
  expect((yield* store.items("job-done", 1)).map((i) => i.index)).toEqual([2])
  expect((yield* store.itemsByIndex("job-done", -1, 10)).map((i) => i.index)).toEqual([0, 1, 2])

  expect(yield* store.getJob("job-gen")).toMatchObject({ status: "running", options: {}, idempotencyKey: undefined, cancelRequested: true })
  expect(yield* store.cancelRequested("job-gen")).toBe(true)
  expect([...(yield* store.unfinished)].sort()).toEqual(["job-gen", "job-pending"])
  expect(yield* store.getJob("job-pending")).toMatchObject({ options: { deadlineSeconds: 60 }, startedAt: undefined })

  expect(yield* store.trackedPosts).toEqual([
    { postId: "p1", articleId: "a1", kolSerial: "k1" },
    { postId: "p2", articleId: "a2", kolSerial: "k1" },
    { postId: "p3", articleId: "a3", kolSerial: "k2" }
  ])
  expect(yield* store.getPost("p2")).toEqual({
    postId: "p2",
    articleId: "a2",
    kolSerial: "k1",
    stockCode: undefined,
    content: undefined,
    source: "imported",
    jobId: undefined,
    createdAt: iso(1_764_000_000_050),
    updatedAt: iso(1_764_000_001_000),
    interactions: { ...p2, fetchedAt: iso(1_764_000_001_000) },
    history: [{ ...p2, fetchedAt: iso(1_764_000_001_000), jobId: "job-done" }]
  })
  expect(yield* store.getPost("g1")).toMatchObject({ source: "generated", content: "hello", stockCode: "2330", jobId: "job-gen", interactions: undefined, history: [] })
  expect(yield* store.getPost("nope")).toBeUndefined()

  expect(yield* coordination.breakerStates).toEqual([
    { breaker: "forum", state: "open", openUntil: 1_764_000_010_000, updatedAt: 1_764_000_005_000 }
  ])
  expect(yield* coordination.upstreamStates).toEqual([
    { upstream: "news", cooldownUntil: 1_764_000_020_000, settings: undefined, settingsAt: 0 },
    { upstream: "market", cooldownUntil: 0, settings: `{"limit":5}`, settingsAt: 1_764_000_006_000 }
  ])

  // And it goes on: an item stored before is not stored again, numbering continues, keys still dedupe.
  expect(yield* store.saveItems("job-gen", [{ result: { index: 0, status: "succeeded", value: null, attempts: 1, durationMs: 1 } }], 9)).toEqual([])
  const more = yield* store.saveItems("job-pending", [{ result: { index: 0, status: "skipped", error: { type: "cancelled", message: "x", retryable: false }, attempts: 0, durationMs: 0 } }], 9)
  expect(more.map((i) => i.seq)).toEqual([0])
  const again = yield* store.createJob({ id: "job-new", kind: "interactions", inputs: [], options: {}, idempotencyKey: "key-1", requestHash: "hash-1", createdAt: 9 })
  expect(again).toMatchObject({ created: false, job: { id: "job-done" } })
  yield* store.probe
})

const stores = Layer.mergeAll(JobStore.Default, CoordinationStore.Default)

/** Loads the fixture, opens the store on it, checks it all, then opens it a second time. */
const adoptsOldData = <E>(client: Layer.Layer<SqlClient.SqlClient, E>) =>
  Effect.gen(function* () {
    yield* Effect.forEach(fixture, (statement) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)), { discard: true }).pipe(
      Effect.provide(client)
    )
    const before = yield* Effect.provide(rowCounts, client)
    expect(before).toMatchObject({ pp_jobs: 3, pp_job_items: 4, pp_posts: 4, pp_post_interactions: 2, pp_breakers: 1, pp_upstreams: 2 })
    yield* Effect.provide(
      Effect.gen(function* () {
        expect(yield* rowCounts).toEqual(before)
        expect(yield* recorded).toEqual(allMigrations)
        yield* readsBack
        expect(yield* migrate).toEqual([])
      }),
      stores.pipe(Layer.provideMerge(client))
    )
  })

const freshTables = <E>(client: Layer.Layer<SqlClient.SqlClient, E>) =>
  Effect.gen(function* () {
    yield* Effect.provide(Effect.void, stores.pipe(Layer.provideMerge(client)))
    yield* Effect.provide(Effect.flatMap(recorded, (ran) => Effect.sync(() => expect(ran).toEqual(allMigrations))), client)
    return yield* Effect.provide(rowCounts, client)
  })

const tempFile = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-migrations-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => path.join(dir, "data.db")))

/** The tables' definitions as SQLite keeps them (it drops IF NOT EXISTS). */
const sqliteSchema = (filename: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ name: string; sql: string }>`SELECT name, sql FROM sqlite_master WHERE name LIKE 'pp_%' AND name <> ${MIGRATIONS_TABLE} AND sql IS NOT NULL ORDER BY name`
  ).pipe(Effect.provide(SqliteClient.layer({ filename })))

/** The pp_ tables' columns and indexes as PostgreSQL describes them. */
const pgSchema = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all([
    sql`SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
      WHERE table_name LIKE 'pp_%' AND table_name <> ${MIGRATIONS_TABLE} ORDER BY table_name, ordinal_position`,
    sql`SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'pp_%' AND tablename <> ${MIGRATIONS_TABLE} ORDER BY indexname`
  ])
)

describe("JobStore migrations", () => {
  it.scoped("SQLite: a data file from before migrations is adopted without losing a row", () =>
    Effect.gen(function* () {
      const filename = yield* tempFile
      yield* adoptsOldData(SqliteClient.layer({ filename }))
    })
  )

  it.scoped("SQLite: a new file gets the same tables as the old store made", () =>
    Effect.gen(function* () {
      const fresh = yield* tempFile
      const counts = yield* freshTables(SqliteClient.layer({ filename: fresh }))
      expect(Object.values(counts).every((n) => n === 0)).toBe(true)
      // The old store's tables, once the migrations after it (5 on) have run there too.
      const old = yield* tempFile
      yield* Effect.forEach(fixture, (statement) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)), { discard: true }).pipe(
        Effect.zipRight(migrate),
        Effect.provide(SqliteClient.layer({ filename: old }))
      )
      const normalize = (rows: ReadonlyArray<{ name: string; sql: string }>) => rows.map((r) => [r.name, r.sql.replace(/\s+/g, " ")])
      expect(normalize(yield* sqliteSchema(fresh))).toEqual(normalize(yield* sqliteSchema(old)))
    })
  )

  layer(Postgres.layer, { timeout: "120 seconds" })("PostgreSQL", (it) => {
    const client = (url: string) => PgClient.layer({ url: Redacted.make(url), maxConnections: 3 })

    it.effect(
      "a database from before migrations is adopted without losing a row",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          yield* adoptsOldData(client(yield* createDatabase(server.url, "migrate_old")))
        }),
      120_000
    )

    it.effect(
      "instances starting together on an empty database take turns, and get the tables the old store made",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const url = yield* createDatabase(server.url, "migrate_race")
          const ran = yield* Effect.all(
            Array.from({ length: 8 }, () => Effect.provide(migrate, client(url))),
            { concurrency: "unbounded" }
          )
          expect(ran.map((r) => r.length).sort()).toEqual([0, 0, 0, 0, 0, 0, 0, 5])
          const counts = yield* freshTables(client(url))
          expect(Object.values(counts).every((n) => n === 0)).toBe(true)
          // The same tables as the old store made (columns, types, nullability, defaults, indexes), once
          // the migrations after it (5 on) have run there too.
          const old = yield* createDatabase(server.url, "migrate_compare")
          yield* Effect.forEach(fixture, (statement) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)), { discard: true }).pipe(
            Effect.zipRight(migrate),
            Effect.provide(client(old))
          )
          expect(yield* Effect.provide(pgSchema, client(url))).toEqual(yield* Effect.provide(pgSchema, client(old)))
        }),
      120_000
    )
  })
})
