/**
 * What a retention sweep costs on the embedded SQLite file, and whether the process stays live meanwhile:
 * `npx tsx scripts/bench-retention.ts [jobs=2000] [batch=500] [incremental]` fills a fresh file with
 * that many finished jobs of 50 items, 200 posts of 150 history rows and, for each job, a finished
 * workflow of 4 cluster messages with their replies, then runs one sweep
 * (`Retention.makeSweep`) while a reader queries every 5 ms, and prints the sweep's wall and CPU time,
 * the reader's latencies and the file size. `incremental` switches the file to
 * `auto_vacuum = INCREMENTAL` first (the README's way), so the sweep also gives pages back.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Duration, Effect, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Retention from "../src/jobs/Retention.js"
import { snowflakeAt } from "../src/jobs/store/ClusterMessageTable.js"
import { migrate } from "../src/jobs/store/Migrations.js"

const JOBS = Number(process.argv[2] ?? 2000)
const BATCH = Number(process.argv[3] ?? 500)
const INCREMENTAL = process.argv[4] === "incremental"
const ITEMS = 50
const POSTS = 200
const HISTORY = 150

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pp-retention-bench-"))
const file = path.join(dir, "bench.db")

const fill = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const result = JSON.stringify({ index: 0, status: "succeeded", value: { views: 1, likes: 2, comments: 3, shares: 4, engagementRate: 0.1 }, attempts: 1, durationMs: 12 })
  for (let from = 0; from < JOBS; from += 100) {
    const jobs = Array.from({ length: Math.min(100, JOBS - from) }, (_, k) => ({
      id: `job-${from + k}`, kind: "interactions", status: "completed", options: "{}", inputs: "[]",
      total: ITEMS, created_at: 1, started_at: 1, finished_at: 2 + from + k
    }))
    yield* sql`INSERT INTO pp_jobs ${sql.insert(jobs)}`
    for (const job of jobs) {
      yield* sql`INSERT INTO pp_job_items ${sql.insert(Array.from({ length: ITEMS }, (_, idx) => ({ job_id: job.id, idx, seq: idx, status: "succeeded", result, finished_at: 2 })))}`
    }
  }
  // A finished workflow per job, a day old: its run request and three activities, each with its final reply.
  let next = snowflakeAt(Date.now() - 86_400_000)
  for (let from = 0; from < JOBS; from += 100) {
    const messages: Array<Record<string, unknown>> = []
    const replies: Array<Record<string, unknown>> = []
    for (let k = from; k < Math.min(JOBS, from + 100); k++) {
      for (const tag of ["run", "activity", "activity", "activity"]) {
        const id = (next += 1n)
        messages.push({
          id, message_id: `m-${id}`, shard_id: "default:1", entity_type: "Workflow/Job", entity_id: `exec-${k}`, kind: 0, tag,
          payload: JSON.stringify({ jobId: `job-${k}` }), headers: "{}", processed: 1, request_id: id
        })
        replies.push({ id: (next += 1n), kind: 0, request_id: id, payload: "{}" })
      }
    }
    yield* sql`INSERT INTO cluster_messages ${sql.insert(messages)}`
    yield* sql`INSERT INTO cluster_replies ${sql.insert(replies)}`
  }
  for (let p = 0; p < POSTS; p++) {
    yield* sql`INSERT INTO pp_post_interactions ${sql.insert(Array.from({ length: HISTORY }, (_, h) => ({ post_id: `post-${p}`, job_id: `job-${h}`, fetched_at: h, data: "{}" })))}`
  }
})

const quantile = (sorted: ReadonlyArray<number>, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* migrate
  if (INCREMENTAL) yield* Effect.zipRight(sql`PRAGMA auto_vacuum = INCREMENTAL`, sql`VACUUM`)
  yield* Layer.build(SqlMessageStorage.layer.pipe(Layer.provide(ShardingConfig.layer())))
  yield* fill
  const messagesBefore = yield* sql`SELECT COUNT(*) AS n FROM cluster_messages`
  const bytesBefore = fs.statSync(file).size
  const sweep = yield* Retention.makeSweep({
    settings: { retention: Duration.seconds(1), interval: Duration.hours(1), postHistoryLimit: 100, batchSize: BATCH },
    isFollowed: () => false
  })
  const latencies: Array<number> = []
  const reader = yield* Effect.gen(function* () {
    for (;;) {
      const started = performance.now()
      yield* sql`SELECT id FROM pp_jobs ORDER BY created_at DESC LIMIT 1`
      latencies.push(performance.now() - started)
      yield* Effect.sleep("5 millis")
    }
  }).pipe(Effect.fork)
  const started = performance.now()
  const cpu = process.cpuUsage()
  const report = yield* sweep
  const wallMs = Math.round(performance.now() - started)
  const used = process.cpuUsage(cpu)
  yield* Fiber.interrupt(reader)
  // The file shrinks when the WAL is checkpointed (SQLite does so by itself every 1,000 pages).
  yield* sql`PRAGMA wal_checkpoint(TRUNCATE)`
  const sorted = [...latencies].sort((a, b) => a - b)
  console.log(JSON.stringify({
    jobs: JOBS, items: JOBS * ITEMS, history: POSTS * HISTORY, batch: BATCH, incremental: INCREMENTAL, report,
    wallMs, cpuMs: Math.round((used.user + used.system) / 1000),
    reads: sorted.length, readerP50Ms: quantile(sorted, 0.5).toFixed(1), readerP99Ms: quantile(sorted, 0.99).toFixed(1), readerMaxMs: (sorted[sorted.length - 1] ?? 0).toFixed(1),
    bytesBefore, bytesAfter: fs.statSync(file).size,
    clusterMessages: { before: messagesBefore, after: yield* sql`SELECT COUNT(*) AS n FROM cluster_messages` }
  }))
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename: file })))).finally(() =>
  fs.rmSync(dir, { recursive: true, force: true })
)
