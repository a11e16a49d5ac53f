/**
 * Jobs and their item results: a job's row (kind, status, options, inputs, cancel flag) and one row
 * per finished item, keyed by job id + item index so that a re-run after a crash cannot store an
 * item twice. Item rows are numbered in finishing order (`seq`, from a counter on the job's row) so a
 * follower can ask for what was stored after the last one it saw.
 *
 * Over 300 lines: the item writer has a path per dialect (`saveItems`), and the argument that its
 * numbering keeps the followers' reads (`items`) complete belongs next to both.
 */
import { SqlClient, type SqlError, SqlSchema } from "@effect/sql"
import { Data, Effect, ParseResult, Schema } from "effect"
import type { ItemResult } from "../../engine/ItemResult.js"
import { AnyItemResult, emptyTally, JobKind, JobOptions, JobStatus, tally, type Counts } from "../Model.js"
import type { ItemEffect } from "./PostTable.js"
import { column, Flag, Int, Nullable, orStoreError, StoreError } from "./Sql.js"

/** A stored job as the store reads it (without its inputs: `inputsOf` reads those). */
export const JobRecord = Schema.Struct({
  id: Schema.String,
  kind: JobKind,
  status: JobStatus,
  // Validated when the job was submitted; a stored job whose options no longer decode (a bound
  // narrowed since) is a `StoreError` when read, not a job run with options it was not given.
  options: Schema.parseJson(JobOptions),
  idempotencyKey: column(Nullable(Schema.String), "idempotency_key"),
  requestHash: column(Nullable(Schema.String), "request_hash"),
  total: Int,
  createdAt: column(Int, "created_at"),
  startedAt: column(Nullable(Int), "started_at"),
  finishedAt: column(Nullable(Int), "finished_at"),
  cancelRequested: column(Flag, "cancel_requested")
})
export type JobRecord = typeof JobRecord.Type

const JOB_COLUMNS = "id, kind, status, options, idempotency_key, request_hash, total, cancel_requested, created_at, started_at, finished_at"

/** A stored item result; `seq` is its place in finishing order. */
export interface StoredItem {
  readonly index: number
  readonly seq: number
  readonly result: AnyItemResult
}

const isItemResult = Schema.is(AnyItemResult)
const int = (u: unknown): number => (typeof u === "number" ? u : typeof u === "string" ? Number(u) : Number.NaN)

/**
 * Item rows (`idx, seq, result`) are the one decode-heavy read: a job's results are up to 10,000 rows,
 * read whole to resume a run, replay its events or answer GET /api/jobs/:id. There the row schema
 * (`SqlSchema.findAll` with `{ index: Int, seq: Int, result: Schema.parseJson(AnyItemResult) }`) cost
 * 3–4× the old hand decode (`npx tsx scripts/bench-store-decode.ts`, 10,000 rows from SQLite, median
 * ms per load on the shared 2-core machine at load 12–15: query alone 43 / 65, JSON.parse by hand
 * 99 / 134, SqlSchema 384 / 455, JSON.parse + `Schema.is(AnyItemResult)` 181 / 258). Most of it is
 * the struct decode building new objects per row, not the union: `Schema.parseJson(Schema.Unknown)`
 * in a row struct alone is 2× the hand decode. So these rows are checked, not transformed: JSON.parse,
 * then the same schema as a type guard — no cast, nothing unchecked, about half the schema's cost.
 */
/** What an item row should be: only the shape a failed check names, not used to decode (see above). */
const ItemRow = Schema.Struct({ idx: Int, seq: Int, result: Schema.parseJson(AnyItemResult) })

/**
 * An item row that fails the check: a `StoreError` whose cause is a `ParseError`, as a row schema's
 * failure is, so that whoever reads it (a job's workflow ends failed rather than wait for storage)
 * tells it from an outage by its cause alone.
 */
export const undecodableItemRow = (row: unknown, reason: string) =>
  new StoreError({
    message: "database: an item result row does not decode",
    cause: ParseResult.parseError(new ParseResult.Type(ItemRow.ast, row, reason))
  })

const decodeItems = (rows: ReadonlyArray<Readonly<Record<string, unknown>>>) =>
  Effect.suspend(() => {
    const items: Array<StoredItem> = []
    for (const row of rows) {
      const index = int(row.idx)
      const seq = int(row.seq)
      const result: unknown = typeof row.result === "string" ? JSON.parse(row.result) : undefined
      if (!Number.isSafeInteger(index) || !Number.isSafeInteger(seq) || !isItemResult(result)) {
        return Effect.fail(undecodableItemRow(row, "not an item result row"))
      }
      items.push({ index, seq, result })
    }
    return Effect.succeed(items)
  }).pipe(
    // JSON.parse throws on text that is not JSON.
    Effect.catchAllDefect((defect) => Effect.fail(undecodableItemRow(defect, `its result is not JSON: ${String(defect)}`)))
  )

/** A job to store: the row `createJob` inserts (status pending, no item stored yet). */
const NewJobRow = Schema.Struct({
  id: Schema.String,
  kind: JobKind,
  inputs: Schema.parseJson(Schema.Array(Schema.Unknown)),
  options: Schema.parseJson(JobOptions),
  idempotencyKey: column(Nullable(Schema.String), "idempotency_key"),
  requestHash: column(Nullable(Schema.String), "request_hash"),
  createdAt: column(Int, "created_at")
})
export type NewJob = typeof NewJobRow.Type
const JobInsert = Schema.Struct({ ...NewJobRow.fields, total: Int })

const Inputs = Schema.Struct({ inputs: Schema.parseJson(Schema.Array(Schema.Unknown)) })
const Count = Schema.Struct({ n: Int })
const StatusCount = Schema.Struct({ status: Schema.Literal("succeeded", "failed", "cancelled", "skipped"), n: Int })
const Flagged = Schema.Struct({ cancelRequested: column(Flag, "cancel_requested") })
const Index = Schema.Struct({ index: column(Int, "idx") })
const Numbered = Schema.Struct({ index: column(Int, "idx"), seq: Int })
// Decoders for statements built per call (a filtered list, a batch insert): compiled once, here.
const decodeJobs = Schema.decodeUnknown(Schema.Array(JobRecord))
const decodeCount = Schema.decodeUnknown(Schema.Tuple(Count))
const decodeIndexes = Schema.decodeUnknown(Schema.Array(Index))
const decodeNumbered = Schema.decodeUnknown(Schema.Array(Numbered))

/** Another writer stored one of a batch's items while it was being saved (PostgreSQL): try again. */
class Raced extends Data.TaggedError("Raced")<{}> {}

export interface ListFilter {
  readonly kind?: JobKind | undefined
  readonly status?: JobStatus | undefined
  readonly limit: number
  readonly offset: number
  /** Keyset paging: only jobs after this one in the list's order (newest first). */
  readonly after?: { readonly createdAt: number; readonly id: string } | undefined
}

export const make = (recordEffects: (jobId: string, effects: ReadonlyArray<ItemEffect>, at: number) => Effect.Effect<void, SqlError.SqlError>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const jobColumns = sql.literal(JOB_COLUMNS)

    const findJob = SqlSchema.findOne({
      Request: Schema.String,
      Result: JobRecord,
      execute: (id) => sql`SELECT ${jobColumns} FROM pp_jobs WHERE id = ${id}`
    })
    const getJob = (id: string) =>
      findJob(id).pipe(Effect.map((job) => (job._tag === "Some" ? job.value : undefined)), orStoreError("reading a job"))

    const insertJob = SqlSchema.findAll({
      Request: JobInsert,
      Result: Schema.Struct({ id: Schema.String }),
      execute: (row) => sql`INSERT INTO pp_jobs ${sql.insert({ ...row, status: "pending", cancel_requested: 0 })} ON CONFLICT DO NOTHING RETURNING id`
    })
    const byIdempotencyKey = SqlSchema.findOne({
      Request: Schema.String,
      Result: JobRecord,
      execute: (key) => sql`SELECT ${jobColumns} FROM pp_jobs WHERE idempotency_key = ${key}`
    })

    /** Inserts the job, or returns the one already stored under the same idempotency key. */
    const createJob = (job: NewJob) =>
      Effect.gen(function* () {
        const inserted = yield* insertJob({ ...job, total: job.inputs.length })
        if (inserted.length > 0) {
          const stored = yield* findJob(job.id)
          if (stored._tag === "Some") return { job: stored.value, created: true }
        } else if (job.idempotencyKey !== undefined) {
          const existing = yield* byIdempotencyKey(job.idempotencyKey)
          if (existing._tag === "Some") return { job: existing.value, created: false }
        }
        return yield* Effect.dieMessage(`job ${job.id} could not be stored`)
      }).pipe(sql.withTransaction, orStoreError("creating a job"))

    const findInputs = SqlSchema.findOne({
      Request: Schema.String,
      Result: Inputs,
      execute: (id) => sql`SELECT inputs FROM pp_jobs WHERE id = ${id}`
    })
    const inputsOf = (id: string) =>
      findInputs(id).pipe(
        Effect.map((row): ReadonlyArray<unknown> => (row._tag === "Some" ? row.value.inputs : [])),
        orStoreError("reading job inputs")
      )

    /** A job's stored items in finishing order; with `afterSeq`, only those stored after it. */
    const items = (id: string, afterSeq = -1) =>
      sql`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND seq > ${afterSeq} ORDER BY seq`.pipe(
        Effect.flatMap(decodeItems),
        orStoreError("reading item results")
      )

    /** The stored items of one part of a job (index mod `parts` = `part`), in finishing order. */
    const itemsOfPart = (id: string, part: number, parts: number) =>
      sql`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND idx % ${parts} = ${part} ORDER BY seq`.pipe(
        Effect.flatMap(decodeItems),
        orStoreError("reading item results")
      )

    /**
     * Up to `limit` stored items of a job in input order, from the index after `afterIndex` on:
     * keyset paging over the (job_id, idx) primary key, so a page costs its own rows only.
     */
    const itemsByIndex = (id: string, afterIndex: number, limit: number) =>
      sql`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND idx > ${afterIndex} ORDER BY idx LIMIT ${limit}`.pipe(
        Effect.flatMap(decodeItems),
        orStoreError("reading item results")
      )

    const statusCounts = SqlSchema.findAll({
      Request: Schema.String,
      Result: StatusCount,
      execute: (id) => sql`SELECT status, COUNT(*) AS n FROM pp_job_items WHERE job_id = ${id} GROUP BY status`
    })
    const counts = (job: Pick<JobRecord, "id" | "total">) =>
      statusCounts(job.id).pipe(
        Effect.map((rows): Counts => {
          const counts = emptyTally(job.total)
          for (const row of rows) tally(counts, row.status, row.n)
          return counts
        }),
        orStoreError("counting item results")
      )

    const listJobs = (filter: ListFilter) =>
      Effect.gen(function* () {
        const filters = [
          ...(filter.kind === undefined ? [] : [sql`kind = ${filter.kind}`]),
          ...(filter.status === undefined ? [] : [sql`status = ${filter.status}`])
        ]
        const where = sql.and(filters)
        // After the cursor in (created_at DESC, id DESC) order: the sort key is unique, so a job is on
        // exactly one page however many are created meanwhile (newer ones sort before the cursor).
        const page = filter.after === undefined
          ? where
          : sql.and([
              ...filters,
              sql`(created_at < ${filter.after.createdAt} OR (created_at = ${filter.after.createdAt} AND id < ${filter.after.id}))`
            ])
        const jobs = yield* sql`SELECT ${jobColumns} FROM pp_jobs WHERE ${page} ORDER BY created_at DESC, id DESC LIMIT ${filter.limit} OFFSET ${filter.offset}`.pipe(
          Effect.flatMap(decodeJobs)
        )
        const [total] = yield* sql`SELECT COUNT(*) AS n FROM pp_jobs WHERE ${where}`.pipe(Effect.flatMap(decodeCount))
        return { jobs, total: total.n }
      }).pipe(orStoreError("listing jobs"))

    const markRunning = (id: string, at: number) =>
      sql`UPDATE pp_jobs SET status = 'running', started_at = COALESCE(started_at, ${at}) WHERE id = ${id} AND status = 'pending'`.pipe(
        Effect.asVoid,
        orStoreError("starting a job")
      )

    const finish = (id: string, status: JobStatus, at: number) =>
      sql`UPDATE pp_jobs SET status = ${status}, finished_at = ${at} WHERE id = ${id}`.pipe(
        Effect.asVoid,
        orStoreError("finishing a job")
      )

    const requestCancel = (id: string) =>
      sql`UPDATE pp_jobs SET cancel_requested = 1 WHERE id = ${id}`.pipe(Effect.asVoid, orStoreError("cancelling a job"))

    const cancelFlag = SqlSchema.findOne({
      Request: Schema.String,
      Result: Flagged,
      execute: (id) => sql`SELECT cancel_requested FROM pp_jobs WHERE id = ${id}`
    })
    const cancelRequested = (id: string) =>
      cancelFlag(id).pipe(
        Effect.map((row) => row._tag === "Some" && row.value.cancelRequested),
        orStoreError("reading a cancel flag")
      )

    /** Jobs that were running or waiting when the process stopped. */
    // Only the ids: a job whose row no longer decodes (options edited by hand, a kind this version
    // does not know) must not keep every other unfinished job from resuming at start-up.
    const unfinished = SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ id: Schema.String }),
      execute: () => sql`SELECT id FROM pp_jobs WHERE status IN ('pending', 'running')`
    })(undefined).pipe(
      Effect.map((rows) => rows.map((row) => row.id)),
      orStoreError("listing unfinished jobs")
    )

    /** One batch of finished items to store, each with what it changes besides its own row. */
    type Batch = ReadonlyArray<{ readonly result: ItemResult<unknown>; readonly effect?: ItemEffect | undefined }>

    /**
     * The writes of `batch` that an INSERT stored (`numbered`: its `RETURNING idx, seq`), in batch
     * order, and the stored items they became.
     */
    const storedOf = (batch: Batch, numbered: ReadonlyArray<{ readonly index: number; readonly seq: number }>) => {
      const seqOf = new Map(numbered.map((row) => [row.index, row.seq]))
      const writes: Array<Batch[number]> = []
      const items: Array<StoredItem> = []
      for (const b of batch) {
        const seq = seqOf.get(b.result.index)
        if (seq === undefined) continue
        writes.push(b)
        items.push({ index: b.result.index, seq, result: b.result })
      }
      return { writes, items }
    }

    // Effects in one order for every writer (by post), so two writers touching the same posts lock
    // them in the same order and cannot deadlock. A stable sort: one post's effects keep theirs.
    const effectsOf = (fresh: Batch) =>
      fresh.flatMap((b) => (b.effect === undefined ? [] : [b.effect])).sort((a, b) => (a.postId < b.postId ? -1 : a.postId > b.postId ? 1 : 0))

    /**
     * SQLite: one writer at a time (the database's lock, taken by the transaction), so each row is
     * numbered as it goes in: one past the job's highest stored number (read once per statement from
     * the (job_id, seq) index), plus its place in the batch. Past every stored item's, so a follower
     * reading `seq > last` misses none; a job with no stored item numbers from 0.
     *
     * Not with the job row's `next_seq` counter (PostgreSQL's): SQLite rewrites a whole row on
     * UPDATE, and the job row holds the job's inputs (~140 KB for 2,000 posts, ~35 overflow pages),
     * so counting there rewrote them into the WAL at every group commit (better-sqlite3 alone, 8-row
     * batches: 22–24 → 12 µs per item for a job of 2,000 inputs, 32–34 → 11–13 for 10,000). And in
     * the INSERT rather than a statement of its own: each statement through `@effect/sql` costs
     * ~30–60 µs of CPU before SQLite does anything (`npm run bench:ledger -- --store-floor`).
     */
    const saveNumberedFirst = (jobId: string, batch: Batch, at: number) =>
      Effect.gen(function* () {
        // Results written with JSON.stringify: they are typed values from the engine, and encoding
        // them again through the schema would only validate what the type already says.
        const values = sql.join(", ", false)(
          batch.map((b, k) => sql`(${k}, ${b.result.index}, ${b.result.status}, ${JSON.stringify(b.result)})`)
        )
        // `WHERE true`: SQLite's parser needs it to read ON CONFLICT after INSERT … SELECT.
        const numbered = yield* sql`INSERT INTO pp_job_items (job_id, idx, seq, status, result, finished_at)
          SELECT ${jobId}, v.column2, (SELECT COALESCE(MAX(seq) + 1, 0) FROM pp_job_items WHERE job_id = ${jobId}) + v.column1, v.column3, v.column4, ${at}
          FROM (VALUES ${values}) AS v WHERE true
          ON CONFLICT DO NOTHING RETURNING idx, seq`.pipe(Effect.flatMap(decodeNumbered))
        const { writes, items } = storedOf(batch, numbered)
        yield* recordEffects(jobId, effectsOf(writes), at)
        return items
      })

    /**
     * PostgreSQL: writers on every instance commit at once, so the numbers are taken LAST. The job's
     * row lock that taking them holds is what orders commits: a transaction numbered after another
     * waited for that one's lock, which PostgreSQL releases only once its COMMIT is visible, so commit
     * order is number order, and a follower reading `seq > last` (`items`) never sees a number before
     * every smaller one is visible. Taken first, the lock was held across every statement of the
     * transaction, each a round trip to a busy event loop, and the writers of a job queued on it
     * (`bench:cluster --pg-stats`, C1: 229 s of waits over three runs on one instance); taken last,
     * it is held for one statement and the COMMIT.
     *
     * So the rows are written by that last statement, numbered as they go in (each row written once:
     * inserting them first with a placeholder and renumbering them at the end doubled PostgreSQL's
     * CPU per item). Which of the batch are new is read first, without the lock, and their effects
     * recorded; should another writer store one of them in between (a part run again while its first
     * run still flushes), the insert stores fewer rows than it numbered, and the whole transaction is
     * rolled back and tried again (`Raced`), effects and counter with it. The rows go in in index
     * order and the effects in post order, so two writers wait for each other in one order only.
     * A job that is not stored has no counter: its items are numbered from 0.
     */
    const saveNumberedLast = (jobId: string, batch: Batch, at: number) =>
      Effect.gen(function* () {
        const known = yield* sql`SELECT idx FROM pp_job_items WHERE job_id = ${jobId} AND idx IN ${sql.in(batch.map((b) => b.result.index))}`.pipe(
          Effect.flatMap(decodeIndexes)
        )
        const stored = new Set(known.map((row) => row.index))
        const fresh = batch.filter((b) => !stored.has(b.result.index))
        if (fresh.length === 0) return []
        yield* recordEffects(jobId, effectsOf(fresh), at)
        const n = fresh.length
        const values = sql.join(", ", false)(
          fresh.map((b, k) => sql`(${k}::integer, ${b.result.index}::integer, ${b.result.status}::text, ${JSON.stringify(b.result)}::text)`)
        )
        const numbered = yield* sql`WITH counter AS (
            UPDATE pp_jobs SET next_seq = next_seq + ${n} WHERE id = ${jobId} RETURNING next_seq - ${n} AS first
          )
          INSERT INTO pp_job_items (job_id, idx, seq, status, result, finished_at)
          SELECT ${jobId}::text, v.idx, COALESCE((SELECT first FROM counter), 0) + v.k, v.status, v.result, ${at}::bigint
          FROM (VALUES ${values}) AS v (k, idx, status, result)
          ORDER BY v.idx
          ON CONFLICT DO NOTHING RETURNING idx, seq`.pipe(Effect.flatMap(decodeNumbered))
        if (numbered.length !== n) return yield* new Raced()
        const { items } = storedOf(fresh, numbered)
        if (items.length !== n) return yield* Effect.dieMessage(`job ${jobId}: ${n - items.length} item(s) stored but not numbered`)
        return items
      })

    /**
     * Stores finished items and what they change, in one transaction. A row that already exists (an
     * item that ran again after a crash) is left as it was, and its side effects are not repeated.
     */
    const saveItems = (jobId: string, batch: Batch, at: number) =>
      (batch.length === 0
        ? Effect.succeed<ReadonlyArray<StoredItem>>([])
        : sql.onDialectOrElse({
            pg: () => saveNumberedLast(jobId, batch, at),
            orElse: () => saveNumberedFirst(jobId, batch, at)
          }).pipe(
            sql.withTransaction,
            // Rolled back because another writer stored one of these items meanwhile: the next try
            // reads it as stored. Each try can only lose to a writer that stored something new.
            Effect.retry({ while: (error) => error._tag === "Raced", times: 10 }),
            Effect.catchTag("Raced", () => Effect.fail(new StoreError({ message: "database: saving item results kept racing another writer", cause: undefined })))
          )
      ).pipe(orStoreError("saving item results"))

    return {
      getJob,
      createJob,
      inputsOf,
      items,
      itemsOfPart,
      itemsByIndex,
      counts,
      listJobs,
      markRunning,
      finish,
      requestCancel,
      cancelRequested,
      unfinished,
      saveItems
    } as const
  })
