/**
 * The store's keyset paging on both dialects: `listJobs` after a cursor (newest first, ties on the
 * creation time broken by id) and `itemsByIndex` (a job's results in input order after an index),
 * against an SQLite file and a real PostgreSQL server (brought up by test/support/postgres.ts).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { JobStore } from "../src/jobs/JobStore.js"
import { createDatabase, Postgres } from "./support/postgres.js"

/** Creates jobs (four per creation time), pages through them, then pages a job's results. */
const exercise = Effect.gen(function* () {
  const store = yield* JobStore
  const create = (i: number, createdAt: number) =>
    store.createJob({
      id: `job-${String(i).padStart(2, "0")}`,
      kind: "intraday-triggers",
      inputs: Array.from({ length: 10 }, (_, k) => k),
      options: {},
      idempotencyKey: undefined,
      requestHash: undefined,
      createdAt
    })
  for (let i = 0; i < 12; i++) yield* create(i, 1_000 + Math.floor(i / 4))
  const expected = Array.from({ length: 12 }, (_, i) => i)
    .sort((a, b) => Math.floor(b / 4) - Math.floor(a / 4) || b - a)
    .map((i) => `job-${String(i).padStart(2, "0")}`)

  const seen: Array<string> = []
  let after: { readonly createdAt: number; readonly id: string } | undefined
  for (let page = 0; page < 10; page++) {
    const { jobs, total } = yield* store.listJobs({ limit: 5, offset: 0, after })
    // Jobs created while paging sort before the cursor: never seen, never shifting a page.
    if (page === 1) yield* create(99, 2_000)
    expect(total).toBe(page < 2 ? 12 : 13)
    seen.push(...jobs.map((j) => j.id))
    const last = jobs[jobs.length - 1]
    if (jobs.length < 5 || last === undefined) break
    after = { createdAt: last.createdAt, id: last.id }
  }
  expect(seen).toEqual(expected)
  const filtered = yield* store.listJobs({ kind: "post-generation", limit: 5, offset: 0, after: { createdAt: 1_002, id: "job-09" } })
  expect(filtered.jobs).toEqual([])

  // Results stored out of order come back by index.
  const results = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4].map((index) => ({
    result: { index, status: "succeeded" as const, value: index * 10, attempts: 1, durationMs: 1 }
  }))
  yield* store.saveItems("job-00", results, 5_000)
  const first = yield* store.itemsByIndex("job-00", -1, 4)
  expect(first.map((i) => i.index)).toEqual([0, 1, 2, 3])
  const rest = yield* store.itemsByIndex("job-00", 3, 100)
  expect(rest.map((i) => i.index)).toEqual([4, 5, 6, 7, 8, 9])
  expect(rest.map((i) => i.result.status === "succeeded" ? i.result.value : undefined)).toEqual([40, 50, 60, 70, 80, 90])
  expect(yield* store.itemsByIndex("job-00", 9, 100)).toEqual([])
  expect(yield* store.itemsByIndex("job-01", -1, 100)).toEqual([])
})

describe("JobStore keyset paging", () => {
  it.scoped("SQLite", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-paging-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      yield* Effect.provide(exercise, JobStore.Default.pipe(Layer.provide(SqliteClient.layer({ filename: path.join(dir, "db") }))))
    })
  )

  layer(Postgres.layer, { timeout: "120 seconds" })("PostgreSQL", (it) => {
    it.effect(
      "PostgreSQL",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const url = yield* createDatabase(server.url, "paging")
          yield* Effect.provide(
            exercise,
            JobStore.Default.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })))
          )
        }),
      120_000
    )
  })
})
