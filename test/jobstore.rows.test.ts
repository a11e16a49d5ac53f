/**
 * The store decodes every row it reads with the row's schema: a row that does not match (a stored
 * item result of a shape the engine never writes, options that are not JSON, a kind it does not know)
 * is a `StoreError`, not a value of the wrong type passed on. SQLite; the PostgreSQL path (BIGINT
 * columns as strings) is covered by jobstore.paging and jobstore.migrations.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { JobStore } from "../src/jobs/JobStore.js"

const withStore = <A, E>(self: Effect.Effect<A, E, JobStore | SqlClient.SqlClient>) =>
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-rows-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    return yield* Effect.provide(self, JobStore.Default.pipe(Layer.provideMerge(SqliteClient.layer({ filename: path.join(dir, "db") }))))
  })

const job = (id: string) => ({
  id,
  kind: "interactions" as const,
  inputs: [1, 2],
  options: { maxConcurrent: 2 },
  idempotencyKey: undefined,
  requestHash: undefined,
  createdAt: 1
})

describe("JobStore row decoding", () => {
  it.scoped("a stored item result of a shape the engine never writes is a StoreError", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* JobStore
        const sql = yield* SqlClient.SqlClient
        yield* store.createJob(job("j"))
        yield* store.saveItems("j", [{ result: { index: 0, status: "succeeded", value: 1, attempts: 1, durationMs: 1 } }], 2)
        expect((yield* store.items("j")).map((i) => i.result)).toEqual([{ index: 0, status: "succeeded", value: 1, attempts: 1, durationMs: 1 }])
        for (const result of [`{"index":1,"status":"exploded","attempts":1,"durationMs":1}`, `{"index":1,"status":"failed","attempts":1,"durationMs":1}`, `not json`]) {
          yield* sql`DELETE FROM pp_job_items WHERE idx = 1`
          yield* sql`INSERT INTO pp_job_items ${sql.insert({ job_id: "j", idx: 1, seq: 1, status: "failed", result, finished_at: 2 })}`
          const error = yield* Effect.flip(store.items("j"))
          expect(error._tag).toBe("StoreError")
          expect(error.message).toContain("item result")
          expect((yield* Effect.flip(store.itemsByIndex("j", -1, 10)))._tag).toBe("StoreError")
        }
      })
    )
  )

  it.scoped("a job row whose options are not JSON, or whose kind is unknown, is a StoreError", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* JobStore
        const sql = yield* SqlClient.SqlClient
        yield* store.createJob(job("a"))
        yield* store.createJob(job("b"))
        expect(yield* store.getJob("a")).toMatchObject({ options: { maxConcurrent: 2 }, cancelRequested: false, startedAt: undefined })
        yield* sql`UPDATE pp_jobs SET options = ${"{maxConcurrent: 2"} WHERE id = ${"a"}`
        yield* sql`UPDATE pp_jobs SET kind = ${"mining"} WHERE id = ${"b"}`
        expect((yield* Effect.flip(store.getJob("a")))._tag).toBe("StoreError")
        expect((yield* Effect.flip(store.getJob("b")))._tag).toBe("StoreError")
        expect((yield* Effect.flip(store.listJobs({ limit: 10, offset: 0 })))._tag).toBe("StoreError")
        expect(yield* store.getJob("missing")).toBeUndefined()
      })
    )
  )

  it.scoped("a job row that does not decode does not hide the other unfinished jobs from the resume at start-up", () =>
    withStore(
      Effect.gen(function* () {
        const store = yield* JobStore
        const sql = yield* SqlClient.SqlClient
        for (const id of ["a", "b", "c"]) yield* store.createJob(job(id))
        yield* sql`UPDATE pp_jobs SET options = ${"{maxConcurrent: 2"} WHERE id = ${"b"}`
        expect((yield* Effect.flip(store.getJob("b")))._tag).toBe("StoreError")
        expect([...(yield* store.unfinished)].sort()).toEqual(["a", "b", "c"])
      })
    )
  )
})
