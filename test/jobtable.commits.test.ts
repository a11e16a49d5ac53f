/**
 * How `JobStore.saveItems` numbers item rows when writers commit at once (src/jobs/store/JobTable.ts):
 * on PostgreSQL the numbers are taken at the end of the transaction, and commit order must still be
 * number order, or a follower reading "stored after the last one I saw" (`items(id, last)`, behind the
 * event stream and other instances) skips items. A property over random batch plans: writers on two
 * store instances (two connection pools) save batches of one job — some items saved twice, by their
 * own writer and another's — while a follower polls; every item is stored and numbered once, the
 * numbers are 0..n-1, and the follower sees every item exactly once. Also, on both dialects: an item
 * saved again keeps its number and its effects are not repeated; a job that is not stored numbers
 * its items from 0.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, Ref } from "effect"
import * as fc from "effect/FastCheck"
import * as TestServices from "effect/TestServices"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { ItemResult } from "../src/engine/ItemResult.js"
import { type ItemEffect, JobStore, type StoredItem } from "../src/jobs/JobStore.js"
import { createDatabase, Postgres, withDatabase } from "./support/postgres.js"

const TIMEOUT = 240_000
const WRITERS = 8
const BATCHES = 50
/** Each writer's items are `w * RANGE + k`: its own, and the ones other writers save again. */
const RANGE = 1_000
const POSTS = 24

const result = (index: number, value: unknown = index): ItemResult<unknown> => ({ index, status: "succeeded", value, attempts: 1, durationMs: 1 })
const interactions = (index: number, views: number): ItemEffect => ({
  _tag: "Interactions",
  postId: `post-${index % POSTS}`,
  articleId: `a-${index % POSTS}`,
  kolSerial: "101",
  data: { views, likes: 0, comments: 0, shares: 0 }
})

const newJob = (id: string) => ({
  id,
  kind: "interactions" as const,
  inputs: [0],
  options: {},
  idempotencyKey: undefined,
  requestHash: undefined,
  createdAt: 1
})

/** A store over its own connection pool until the scope closes: one instance of the service. */
const storeAt = (url: string, connections: number) =>
  Layer.build(JobStore.Default.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: connections })))).pipe(
    Effect.map((context) => Context.get(context, JobStore))
  )

/**
 * One batch of a writer: `size` items of its own (the next ones, in an order `order` scrambles), each
 * with an effect on a post (at most `POSTS` in a row, so no post twice in a batch), and items of
 * other writers saved again (`repeats`, without effects: a part run again while its first run still
 * flushes). The posts overlap between writers, in random orders: lock order matters.
 */
const BatchPlan = fc.record({
  size: fc.integer({ min: 1, max: 12 }),
  order: fc.nat(),
  repeats: fc.array(fc.nat(), { maxLength: 3 })
})
const Plan = fc.array(fc.array(BatchPlan, { minLength: BATCHES, maxLength: BATCHES }), { minLength: WRITERS, maxLength: WRITERS })
type Plan = typeof Plan extends fc.Arbitrary<infer T> ? T : never

const batchesOf = (plan: Plan) => {
  const totals = plan.map((batches) => batches.reduce((n, b) => n + b.size, 0))
  return plan.map((batches, w) => {
    let next = 0
    return batches.map((b) => {
      const own = Array.from({ length: b.size }, (_, k) => w * RANGE + next + k)
      next += b.size
      // Scrambled: a batch is in finishing order, not index order.
      const turned = [...own.slice(b.order % b.size), ...own.slice(0, b.order % b.size)]
      const ordered = b.order % 2 === 0 ? turned : turned.reverse()
      const others = [...new Set(b.repeats.map((r) => {
        const owner = r % WRITERS
        return owner * RANGE + (Math.floor(r / WRITERS) % (totals[owner] ?? 1))
      }))].filter((index) => !own.includes(index))
      return [
        ...ordered.map((index) => ({ result: result(index), effect: interactions(index, index) })),
        ...others.map((index) => ({ result: result(index) }))
      ]
    })
  })
}

let runs = 0

describe("saveItems: item numbers and commit order", () => {
  layer(Postgres.layer, { timeout: "120 seconds" })("PostgreSQL", (it) => {
    it.effect.prop(
      "concurrent writers on two instances: every item stored and numbered once, 0..n-1; a follower sees each exactly once",
      // The plan from a seed: a failure names the seed, not 400 batches (and is not shrunk: each run
      // takes seconds).
      [fc.integer()],
      ([seed]) =>
        Effect.gen(function* () {
          const [plan = []] = fc.sample(Plan, { seed, numRuns: 1 })
          const server = yield* Postgres
          const run = runs++
          const url = run === 0 ? yield* createDatabase(server.url, "jobtable_commits") : withDatabase(server.url, "jobtable_commits")
          const a = yield* storeAt(url, 5)
          const b = yield* storeAt(url, 5)
          const jobId = `job-${run}`
          yield* a.createJob(newJob(jobId))

          const batches = batchesOf(plan)
          const returned: Array<StoredItem> = []
          const seen: Array<StoredItem> = []
          const done = yield* Ref.make(false)
          // The follower: what was stored after the last number it saw, again and again.
          const poll = Effect.gen(function* () {
            const last = seen.at(-1)?.seq ?? -1
            seen.push(...(yield* a.items(jobId, last)))
          })
          const follower = Effect.gen(function* () {
            while (!(yield* Ref.get(done))) {
              yield* poll
              yield* Effect.sleep("1 millis")
            }
            yield* poll
          })
          const writers = Effect.forEach(
            batches,
            (own, w) =>
              Effect.forEach(own, (batch) => (w % 2 === 0 ? a : b).saveItems(jobId, batch, 2).pipe(Effect.map((saved) => void returned.push(...saved)))),
            { concurrency: "unbounded", discard: true }
          ).pipe(Effect.ensuring(Ref.set(done, true)))
          yield* Effect.all([writers, follower], { concurrency: 2, discard: true })

          const stored = yield* a.items(jobId)
          const expected = new Set(batches.flat(2).map((item) => item.result.index))
          // Every item once, numbered 0..n-1 (only rows actually inserted take a number).
          expect(stored.length).toBe(expected.size)
          expect(new Set(stored.map((s) => s.index))).toEqual(expected)
          expect(stored.map((s) => s.seq)).toEqual(stored.map((_, i) => i))
          // Each stored by exactly one saveItems, which returned the number it has.
          expect([...returned].sort((x, y) => x.seq - y.seq).map((s) => [s.index, s.seq])).toEqual(stored.map((s) => [s.index, s.seq]))
          // The follower saw them all, each once, in number order: nothing committed behind its back.
          const seenOnce = new Set(seen.map((s) => s.index))
          expect(stored.filter((s) => !seenOnce.has(s.index)).map((s) => s.index)).toEqual([])
          expect(seen.length).toBe(seenOnce.size)
          expect(seen.map((s) => [s.index, s.seq])).toEqual(stored.map((s) => [s.index, s.seq]))
        }).pipe(Effect.scoped, TestServices.provideLive),
      { timeout: TIMEOUT, fastCheck: { numRuns: 3, endOnFailure: true } }
    )

    it.effect(
      "an item saved again keeps its number, and its effects are not repeated; a job not stored numbers from 0",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const url = yield* createDatabase(server.url, "jobtable_resave")
          yield* resaved(true).pipe(Effect.provide(JobStore.Default.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })))))
        }),
      TIMEOUT
    )
  })

  it.scoped("SQLite: an item saved again keeps its number, and its effects are not repeated; a job not stored numbers from 0", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-commits-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      yield* resaved(false).pipe(Effect.provide(JobStore.Default.pipe(Layer.provide(SqliteClient.layer({ filename: path.join(dir, "db") })))))
    })
  )
})

/**
 * `dense`: PostgreSQL numbers only the rows it inserted; SQLite (one writer, numbers taken first)
 * skips the numbers of rows that were stored already.
 */
const resaved = (dense: boolean) => Effect.gen(function* () {
  const store = yield* JobStore
  yield* store.createJob(newJob("j"))
  const first = yield* store.saveItems("j", [{ result: result(0, "first"), effect: interactions(0, 10) }], 2)
  expect(first.map((s) => [s.index, s.seq])).toEqual([[0, 0]])
  // Item 0 again (a run after a crash), with other counts, after a fresh item: only item 1 is new.
  const again = yield* store.saveItems("j", [
    { result: result(1, "one"), effect: interactions(1, 11) },
    { result: result(0, "second"), effect: interactions(0, 99) }
  ], 3)
  expect(again.map((s) => [s.index, s.seq])).toEqual([[1, 1]])
  expect(yield* store.saveItems("j", [{ result: result(1, "again"), effect: interactions(1, 98) }], 4)).toEqual([])
  const [two] = yield* store.saveItems("j", [{ result: result(2) }], 5)
  if (dense) expect(two?.seq).toBe(2)
  else expect(two?.seq).toBeGreaterThan(1)
  const stored = yield* store.items("j")
  expect(stored.map((s) => [s.index, s.seq, s.result.status === "succeeded" ? s.result.value : undefined])).toEqual([
    [0, 0, "first"],
    [1, 1, "one"],
    [2, two?.seq, 2]
  ])
  const post0 = yield* store.getPost("post-0")
  expect(post0?.interactions?.views).toBe(10)
  expect(post0?.history.map((h) => h.views)).toEqual([10])
  expect((yield* store.getPost("post-1"))?.interactions?.views).toBe(11)
  // A job that is not stored (its row deleted meanwhile) has no counter: its items number from 0.
  const orphan = yield* store.saveItems("gone", [{ result: result(5) }, { result: result(3) }, { result: result(4) }], 6)
  expect(orphan.map((s) => [s.index, s.seq])).toEqual([[5, 0], [3, 1], [4, 2]])
  expect((yield* store.items("gone")).map((s) => s.index)).toEqual([5, 3, 4])
})
