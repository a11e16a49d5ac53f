/**
 * What decoding a job's stored item results costs per row: 10,000 rows (`idx, seq, result`) read from
 * an SQLite file, decoded four ways in the same process, alternating so machine load hits all alike —
 * the query alone, by hand (JSON.parse, the old cast), the store's `items` (JSON.parse, then
 * `Schema.is(AnyItemResult)` as a type guard), and `SqlSchema.findAll` with the full row schema
 * (`Schema.parseJson(AnyItemResult)`). Wall time per load, median of 12 after 3 warm-ups.
 *
 *   npx tsx scripts/bench-store-decode.ts
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { JobStore } from "../src/jobs/JobStore.js"
import { AnyItemResult } from "../src/jobs/Model.js"
import { column, Int } from "../src/jobs/store/Sql.js"

const N = 10_000
const WARMUP = 3
const RUNS = 12

const result = (index: number) =>
  index % 10 === 0
    ? { index, id: `p${index}`, status: "failed" as const, error: { type: "timeout" as const, message: "attempt timed out", retryable: true }, attempts: 3, durationMs: 1500 }
    : { index, id: `p${index}`, status: "succeeded" as const, value: { views: index, likes: 3, comments: 2, shares: 1, engagementRate: 0.12 }, attempts: 1, durationMs: 40 }

const program = Effect.gen(function* () {
  const store = yield* JobStore
  const sql = yield* SqlClient.SqlClient
  yield* store.createJob({ id: "j", kind: "interactions", inputs: Array.from({ length: N }, (_, i) => i), options: {}, idempotencyKey: undefined, requestHash: undefined, createdAt: 1 })
  for (let b = 0; b < N / 1000; b++) {
    yield* store.saveItems("j", Array.from({ length: 1000 }, (_, k) => ({ result: result(b * 1000 + k) })), 2)
  }
  const query = sql`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${"j"} AND seq > ${-1} ORDER BY seq`
  const variants: ReadonlyArray<readonly [string, Effect.Effect<ReadonlyArray<unknown>, unknown>]> = [
    ["query only", query],
    ["by hand (JSON.parse, cast)", Effect.map(query, (rows) => rows.map((row) => ({ index: Number(row.idx), seq: Number(row.seq), result: JSON.parse(String(row.result)) })))],
    ["store.items (JSON.parse + Schema.is)", store.items("j")],
    [
      "SqlSchema.findAll (row schema)",
      SqlSchema.findAll({
        Request: Schema.String,
        Result: Schema.Struct({ index: column(Int, "idx"), seq: Int, result: Schema.parseJson(AnyItemResult) }),
        execute: (id) => sql`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND seq > ${-1} ORDER BY seq`
      })("j")
    ]
  ]
  const times = new Map<string, Array<number>>()
  for (let round = 0; round < WARMUP + RUNS; round++) {
    for (const [label, load] of variants) {
      const start = performance.now()
      const rows = yield* load
      const ms = performance.now() - start
      if (rows.length !== N) return yield* Effect.dieMessage(`${label}: ${rows.length} rows, expected ${N}`)
      if (round >= WARMUP) times.set(label, [...(times.get(label) ?? []), ms])
    }
  }
  for (const [label, ms] of times) {
    const sorted = [...ms].sort((a, b) => a - b)
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0
    yield* Effect.log(`${label.padEnd(38)} ${median.toFixed(1).padStart(7)} ms per ${N} rows  (${((median * 1000) / N).toFixed(1)} µs/row)`)
  }
})

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pp-bench-store-"))
Effect.runFork(
  program.pipe(
    Effect.provide(JobStore.Default.pipe(Layer.provideMerge(SqliteClient.layer({ filename: path.join(dir, "bench.db") })))),
    Effect.ensuring(Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))),
    Effect.orDie
  )
)
