/**
 * The SQL tables behind jobs and tracked posts: jobs with their inputs, one row per finished item
 * (keyed by job id + item index, so a re-run after a crash cannot store an item twice), and posts
 * with their latest interaction counts and history. Plain SQL that SQLite and PostgreSQL both accept.
 */
import { SqlClient, SqlError } from "@effect/sql"
import { Data, Effect, Layer, Option } from "effect"
import type { ItemResult, ItemStatus } from "../engine/ItemResult.js"
import type { Interactions } from "../upstream/Forum.js"
import { emptyTally, successOf, tally, type Counts, type JobKind, type JobOptions, type JobStatus, type JobView } from "./Model.js"

export class StoreError extends Data.TaggedError("StoreError")<{ readonly message: string; readonly cause: unknown }> {}

/**
 * Every way a statement can fail becomes a `StoreError`, including a failed COMMIT or ROLLBACK, which
 * `@effect/sql` turns into a defect (`Effect.orDie` in its `withTransaction`). That is exactly where a
 * full disk fails SQLite (it appends the transaction to the WAL at COMMIT, and then rolls it back by
 * itself, so the ROLLBACK after a failed statement fails too): as a defect it escaped every retry and
 * `StoreError` handler — the result writer died silently and submissions answered 500.
 */
const orStoreError = (what: string) => <A, R>(effect: Effect.Effect<A, SqlError.SqlError | StoreError, R>) =>
  effect.pipe(
    Effect.catchSomeDefect((defect) =>
      defect instanceof SqlError.SqlError ? Option.some(Effect.fail(defect)) : Option.none()
    ),
    Effect.mapError((cause) =>
      cause._tag === "StoreError" ? cause : new StoreError({ message: `database: ${what} failed`, cause })
    )
  )

export interface JobRecord {
  readonly id: string
  readonly kind: JobKind
  readonly status: JobStatus
  readonly options: JobOptions
  readonly idempotencyKey: string | undefined
  readonly requestHash: string | undefined
  readonly total: number
  readonly createdAt: number
  readonly startedAt: number | undefined
  readonly finishedAt: number | undefined
  readonly cancelRequested: boolean
}

export interface StoredItem {
  readonly index: number
  readonly seq: number
  readonly result: ItemResult<unknown>
}

export interface NewJob {
  readonly id: string
  readonly kind: JobKind
  readonly inputs: ReadonlyArray<unknown>
  readonly options: JobOptions
  readonly idempotencyKey: string | undefined
  readonly requestHash: string | undefined
  readonly createdAt: number
}

/** What finishing an item changes besides its own row. */
export type ItemEffect =
  | { readonly _tag: "Interactions"; readonly postId: string; readonly articleId: string; readonly kolSerial: string; readonly data: Interactions }
  | {
      readonly _tag: "GeneratedPost"
      readonly postId: string
      readonly kolSerial: string
      readonly stockCode: string
      readonly content: string
    }

export interface TrackedPostRecord {
  readonly postId: string
  readonly articleId: string | undefined
  readonly kolSerial: string
  readonly stockCode: string | undefined
  readonly content: string | undefined
  readonly source: "imported" | "generated"
  readonly jobId: string | undefined
  readonly createdAt: string
  readonly updatedAt: string
  readonly interactions: (Interactions & { readonly fetchedAt: string }) | undefined
  readonly history: ReadonlyArray<Interactions & { readonly fetchedAt: string; readonly jobId: string }>
}

const num = (u: unknown): number => (typeof u === "number" ? u : Number(u))
const optNum = (u: unknown): number | undefined => (u === null || u === undefined ? undefined : num(u))
const optStr = (u: unknown): string | undefined => (u === null || u === undefined ? undefined : String(u))
const iso = (ms: number) => new Date(ms).toISOString()

type Row = Record<string, unknown>

const toJob = (row: Row): JobRecord => ({
  id: String(row.id),
  kind: String(row.kind) as JobKind,
  status: String(row.status) as JobStatus,
  options: JSON.parse(String(row.options)) as JobOptions,
  idempotencyKey: optStr(row.idempotency_key),
  requestHash: optStr(row.request_hash),
  total: num(row.total),
  createdAt: num(row.created_at),
  startedAt: optNum(row.started_at),
  finishedAt: optNum(row.finished_at),
  cancelRequested: num(row.cancel_requested) === 1
})

const toStored = (row: Row): StoredItem => ({
  index: num(row.idx),
  seq: num(row.seq),
  result: JSON.parse(String(row.result)) as ItemResult<unknown>
})

const isItemStatus = (s: string): s is ItemStatus =>
  s === "succeeded" || s === "failed" || s === "cancelled" || s === "skipped"

/** Arbitrary, fixed: the advisory lock key that serializes schema creation. */
export const SCHEMA_LOCK_KEY = 7_240_611_001

const statements = [
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
  `CREATE INDEX IF NOT EXISTS pp_job_items_seq ON pp_job_items (job_id, seq)`,
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
  )`,
  // One row, rewritten by every probe write (StorageHealth): whether the database takes writes.
  `CREATE TABLE IF NOT EXISTS pp_storage_probe (
    id TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS pp_post_interactions (
    post_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (post_id, job_id)
  )`
]

export class JobStore extends Effect.Service<JobStore>()("parallel-processor/JobStore", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const createAll = Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true })
    // Instances starting together on an empty PostgreSQL database would race on CREATE TABLE IF NOT
    // EXISTS (it is not atomic there); a transaction-scoped advisory lock makes them take turns.
    const ensureSchema = sql
      .onDialectOrElse({
        pg: () => sql.withTransaction(Effect.zipRight(sql`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`, createAll)),
        orElse: () => createAll
      })
      .pipe(orStoreError("creating tables"))
    yield* ensureSchema

    const getJob = (id: string) =>
      sql<Row>`SELECT * FROM pp_jobs WHERE id = ${id}`.pipe(
        Effect.map((rows) => (rows[0] === undefined ? undefined : toJob(rows[0]))),
        orStoreError("reading a job")
      )

    /** Inserts the job, or returns the one already stored under the same idempotency key. */
    const createJob = (job: NewJob) =>
      Effect.gen(function* () {
        const inserted = yield* sql<Row>`INSERT INTO pp_jobs ${sql.insert({
          id: job.id,
          kind: job.kind,
          status: "pending",
          options: JSON.stringify(job.options),
          inputs: JSON.stringify(job.inputs),
          idempotency_key: job.idempotencyKey ?? null,
          request_hash: job.requestHash ?? null,
          total: job.inputs.length,
          cancel_requested: 0,
          created_at: job.createdAt
        })} ON CONFLICT DO NOTHING RETURNING id`
        if (inserted.length > 0) return { job: (yield* getJob(job.id))!, created: true }
        const existing = job.idempotencyKey === undefined
          ? []
          : yield* sql<Row>`SELECT * FROM pp_jobs WHERE idempotency_key = ${job.idempotencyKey}`
        const row = existing[0]
        if (row === undefined) return yield* Effect.dieMessage(`job ${job.id} could not be stored`)
        return { job: toJob(row), created: false }
      }).pipe(sql.withTransaction, orStoreError("creating a job"))

    const inputsOf = (id: string) =>
      sql<Row>`SELECT inputs FROM pp_jobs WHERE id = ${id}`.pipe(
        Effect.map((rows) => (rows[0] === undefined ? [] : (JSON.parse(String(rows[0].inputs)) as ReadonlyArray<unknown>))),
        orStoreError("reading job inputs")
      )

    /** A job's stored items in finishing order; with `afterSeq`, only those stored after it. */
    const items = (id: string, afterSeq = -1) =>
      sql<Row>`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND seq > ${afterSeq} ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map(toStored)),
        orStoreError("reading item results")
      )

    /**
     * Up to `limit` stored items of a job in input order, from the index after `afterIndex` on:
     * keyset paging over the (job_id, idx) primary key, so a page costs its own rows only.
     */
    const itemsByIndex = (id: string, afterIndex: number, limit: number) =>
      sql<Row>`SELECT idx, seq, result FROM pp_job_items WHERE job_id = ${id} AND idx > ${afterIndex} ORDER BY idx LIMIT ${limit}`.pipe(
        Effect.map((rows) => rows.map(toStored)),
        orStoreError("reading item results")
      )

    const counts = (job: JobRecord) =>
      sql<Row>`SELECT status, COUNT(*) AS n FROM pp_job_items WHERE job_id = ${job.id} GROUP BY status`.pipe(
        Effect.map((rows): Counts => {
          const counts = emptyTally(job.total)
          for (const row of rows) {
            const status = String(row.status)
            if (isItemStatus(status)) tally(counts, status, num(row.n))
          }
          return counts
        }),
        orStoreError("counting item results")
      )

    const listJobs = (filter: {
      readonly kind?: JobKind | undefined
      readonly status?: JobStatus | undefined
      readonly limit: number
      readonly offset: number
      /** Keyset paging: only jobs after this one in the list's order (newest first). */
      readonly after?: { readonly createdAt: number; readonly id: string } | undefined
    }) =>
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
        const rows = yield* sql<Row>`SELECT * FROM pp_jobs WHERE ${page} ORDER BY created_at DESC, id DESC LIMIT ${filter.limit} OFFSET ${filter.offset}`
        const total = yield* sql<Row>`SELECT COUNT(*) AS n FROM pp_jobs WHERE ${where}`
        return { jobs: rows.map(toJob), total: num(total[0]?.n ?? 0) }
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

    const cancelRequested = (id: string) =>
      sql<Row>`SELECT cancel_requested FROM pp_jobs WHERE id = ${id}`.pipe(
        Effect.map((rows) => num(rows[0]?.cancel_requested ?? 0) === 1),
        orStoreError("reading a cancel flag")
      )

    /**
     * Stores finished items and what they change, in one transaction. A row that already exists (an
     * item that ran again after a crash) is left as it was, and its side effects are not repeated.
     */
    const saveItems = (
      jobId: string,
      batch: ReadonlyArray<{ readonly result: ItemResult<unknown>; readonly effect?: ItemEffect | undefined }>,
      at: number
    ) =>
      Effect.gen(function* () {
        if (batch.length === 0) return []
        // Sequence numbers come from the job's row, so writers on several instances never collide;
        // the row lock also orders their transactions.
        const counter = yield* sql<Row>`UPDATE pp_jobs SET next_seq = next_seq + ${batch.length} WHERE id = ${jobId} RETURNING next_seq`
        const first = num(counter[0]?.next_seq ?? batch.length) - batch.length
        const numbered = batch.map((b, i) => ({ ...b, seq: first + i }))
        const inserted = yield* sql<Row>`INSERT INTO pp_job_items ${sql.insert(
          numbered.map((b) => ({
            job_id: jobId,
            idx: b.result.index,
            seq: b.seq,
            status: b.result.status,
            result: JSON.stringify(b.result),
            finished_at: at
          }))
        )} ON CONFLICT DO NOTHING RETURNING idx`
        const stored = new Set(inserted.map((row) => num(row.idx)))
        const fresh = numbered.filter((b) => stored.has(b.result.index))
        const interactions = fresh.flatMap((b) => (b.effect?._tag === "Interactions" ? [b.effect] : []))
        if (interactions.length > 0) {
          yield* sql`INSERT INTO pp_posts ${sql.insert(
            interactions.map((e) => ({
              post_id: e.postId,
              article_id: e.articleId,
              kol_serial: e.kolSerial,
              source: "imported",
              interactions: JSON.stringify(e.data),
              interactions_at: at,
              created_at: at,
              updated_at: at
            }))
          )} ON CONFLICT (post_id) DO UPDATE SET interactions = excluded.interactions, interactions_at = excluded.interactions_at, updated_at = excluded.updated_at, article_id = COALESCE(pp_posts.article_id, excluded.article_id)`
          yield* sql`INSERT INTO pp_post_interactions ${sql.insert(
            interactions.map((e) => ({ post_id: e.postId, job_id: jobId, fetched_at: at, data: JSON.stringify(e.data) }))
          )} ON CONFLICT DO NOTHING`
        }
        const generated = fresh.flatMap((b) => (b.effect?._tag === "GeneratedPost" ? [b.effect] : []))
        if (generated.length > 0) {
          yield* sql`INSERT INTO pp_posts ${sql.insert(
            generated.map((e) => ({
              post_id: e.postId,
              kol_serial: e.kolSerial,
              stock_code: e.stockCode,
              content: e.content,
              source: "generated",
              job_id: jobId,
              created_at: at,
              updated_at: at
            }))
          )} ON CONFLICT (post_id) DO UPDATE SET content = excluded.content, stock_code = excluded.stock_code, job_id = excluded.job_id, updated_at = excluded.updated_at`
        }
        return fresh.map((b): StoredItem => ({ index: b.result.index, seq: b.seq, result: b.result }))
      }).pipe(sql.withTransaction, orStoreError("saving item results"))

    const importPosts = (
      posts: ReadonlyArray<{ readonly postId: string; readonly articleId: string; readonly kolSerial: string }>,
      at: number
    ) =>
      (posts.length === 0
        ? Effect.void
        : sql`INSERT INTO pp_posts ${sql.insert(
            posts.map((p) => ({
              post_id: p.postId,
              article_id: p.articleId,
              kol_serial: p.kolSerial,
              source: "imported",
              created_at: at,
              updated_at: at
            }))
          )} ON CONFLICT (post_id) DO UPDATE SET article_id = excluded.article_id, kol_serial = excluded.kol_serial, updated_at = excluded.updated_at`
      ).pipe(Effect.asVoid, sql.withTransaction, orStoreError("importing posts"))

    const trackedPosts = sql<Row>`SELECT post_id, article_id, kol_serial FROM pp_posts WHERE article_id IS NOT NULL ORDER BY created_at, post_id`.pipe(
      Effect.map((rows) =>
        rows.map((row) => ({ postId: String(row.post_id), articleId: String(row.article_id), kolSerial: String(row.kol_serial) }))
      ),
      orStoreError("listing tracked posts")
    )

    const getPost = (postId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<Row>`SELECT * FROM pp_posts WHERE post_id = ${postId}`
        const row = rows[0]
        if (row === undefined) return undefined
        const history = yield* sql<Row>`SELECT job_id, fetched_at, data FROM pp_post_interactions WHERE post_id = ${postId} ORDER BY fetched_at, job_id`
        const latestAt = optNum(row.interactions_at)
        const latest = optStr(row.interactions)
        const record: TrackedPostRecord = {
          postId: String(row.post_id),
          articleId: optStr(row.article_id),
          kolSerial: String(row.kol_serial),
          stockCode: optStr(row.stock_code),
          content: optStr(row.content),
          source: String(row.source) === "generated" ? "generated" : "imported",
          jobId: optStr(row.job_id),
          createdAt: iso(num(row.created_at)),
          updatedAt: iso(num(row.updated_at)),
          interactions:
            latest === undefined || latestAt === undefined
              ? undefined
              : { ...(JSON.parse(latest) as Interactions), fetchedAt: iso(latestAt) },
          history: history.map((h) => ({
            ...(JSON.parse(String(h.data)) as Interactions),
            fetchedAt: iso(num(h.fetched_at)),
            jobId: String(h.job_id)
          }))
        }
        return record
      }).pipe(orStoreError("reading a post"))

    /** Jobs that were running or waiting when the process stopped. */
    const unfinished = sql<Row>`SELECT * FROM pp_jobs WHERE status IN ('pending', 'running')`.pipe(
      Effect.map((rows) => rows.map(toJob)),
      orStoreError("listing unfinished jobs")
    )

    /**
     * (PostgreSQL only.) One runner's share of a cluster-wide limit (`gate`), renewed under a lock on the gate's rows:
     * the shares of live runners never add up to more than `limit`, a runner never gets less than what
     * it may have in use (`floor`), and runners that want more than they hold get shares in proportion to what they want. A runner that stops
     * renewing (dead) loses its share when its lease runs out.
     */
    const renewClaim = (gate: string, runner: string, limit: number, floor: number, wants: number, leaseMs: number) =>
      Effect.gen(function* () {
        // One lock per gate (row locks would not cover runners whose rows do not exist yet).
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${gate}))`
        const now = Date.now()
        yield* sql`INSERT INTO pp_gate_claims ${sql.insert({ gate, runner, claim: 0, wants, expires_at: now + leaseMs })} ON CONFLICT DO NOTHING`
        const rows = yield* sql<Row>`SELECT runner, claim, wants, expires_at FROM pp_gate_claims WHERE gate = ${gate}`
        const others = rows.filter((r) => String(r.runner) !== runner && num(r.expires_at) > now)
        const held = others.reduce((sum, r) => sum + num(r.claim), 0)
        const free = Math.max(0, limit - held)
        // Fair: the limit split in proportion to what each runner still has to run (a job's parts
        // rarely divide evenly between runners), at least one permit for a runner with work.
        const totalWants = others.reduce((sum, r) => sum + Math.max(0, num(r.wants)), 0) + Math.max(0, wants)
        const fair = wants <= 0 ? 0 : Math.max(1, Math.floor((limit * wants) / totalWants))
        const starving = others.some((r) => num(r.wants) > num(r.claim))
        const target = Math.min(wants, free, starving ? fair : limit)
        // `floor` is what this runner may have in use right now; its recorded share never goes below
        // it, so shrinking takes effect one renewal later, after the runner has stopped handing out
        // the difference.
        const claim = Math.max(target, floor)
        yield* sql`UPDATE pp_gate_claims SET claim = ${claim}, wants = ${wants}, expires_at = ${now + leaseMs} WHERE gate = ${gate} AND runner = ${runner}`
        // Not settled while this runner has less than it may get once others shrink, a shrink of its
        // own is still to be recorded, or another runner waits for permits this one holds beyond its
        // fair part: the runner should come back soon.
        const settled = target >= Math.min(wants, starving ? fair : limit) && claim <= target && !(starving && target > fair)
        return { target, settled }
      }).pipe(sql.withTransaction, orStoreError("renewing a concurrency share"))

    const dropClaim = (gate: string, runner: string) =>
      sql`DELETE FROM pp_gate_claims WHERE gate = ${gate} AND runner = ${runner}`.pipe(
        Effect.asVoid,
        orStoreError("releasing a concurrency share")
      )

    /** The cluster-wide state of an upstream's breaker, written by the instance that saw it change. */
    const publishBreaker = (breaker: string, state: "open" | "closed", openUntil: number, at: number) =>
      sql`INSERT INTO pp_breakers ${sql.insert({ breaker, state, open_until: openUntil, probe_holder: null, probe_expires: null, updated_at: at })}
        ON CONFLICT (breaker) DO UPDATE SET state = excluded.state, open_until = excluded.open_until,
        probe_holder = NULL, probe_expires = NULL, updated_at = excluded.updated_at`.pipe(
        Effect.asVoid,
        orStoreError("publishing a breaker state")
      )

    const breakerStates = sql<Row>`SELECT breaker, state, open_until, updated_at FROM pp_breakers`.pipe(
      Effect.map((rows) =>
        rows.map((r) => ({
          breaker: String(r.breaker),
          state: String(r.state) === "open" ? ("open" as const) : ("closed" as const),
          openUntil: num(r.open_until),
          updatedAt: num(r.updated_at)
        }))
      ),
      orStoreError("reading breaker states")
    )

    /** The one half-open probe of an open breaker, cluster-wide: true for the instance that gets it. */
    const claimProbe = (breaker: string, runner: string, now: number, ttlMs: number) =>
      sql<Row>`UPDATE pp_breakers SET probe_holder = ${runner}, probe_expires = ${now + ttlMs}
        WHERE breaker = ${breaker} AND state = 'open' AND open_until <= ${now}
        AND (probe_holder IS NULL OR probe_expires < ${now} OR probe_holder = ${runner}) RETURNING breaker`.pipe(
        Effect.map((rows) => rows.length > 0),
        orStoreError("claiming a breaker probe")
      )

    /** (PostgreSQL only.) A cooldown one instance saw: every instance pauses admission until then. */
    const shareCooldown = (upstream: string, until: number) =>
      sql`INSERT INTO pp_upstreams ${sql.insert({ upstream, cooldown_until: until, settings: null, settings_at: 0 })}
        ON CONFLICT (upstream) DO UPDATE SET cooldown_until = GREATEST(pp_upstreams.cooldown_until, excluded.cooldown_until)`.pipe(
        Effect.asVoid,
        orStoreError("sharing an upstream cooldown")
      )

    /** (PostgreSQL only.) An operator's change to an upstream budget (JSON), for every instance to apply. */
    const publishUpstreamSettings = (upstream: string, settings: string, at: number) =>
      sql`INSERT INTO pp_upstreams ${sql.insert({ upstream, cooldown_until: 0, settings, settings_at: at })}
        ON CONFLICT (upstream) DO UPDATE SET settings = excluded.settings, settings_at = excluded.settings_at`.pipe(
        Effect.asVoid,
        orStoreError("publishing upstream settings")
      )

    const upstreamStates = sql<Row>`SELECT upstream, cooldown_until, settings, settings_at FROM pp_upstreams`.pipe(
      Effect.map((rows) =>
        rows.map((r) => ({
          upstream: String(r.upstream),
          cooldownUntil: num(r.cooldown_until),
          settings: r.settings === null || r.settings === undefined ? undefined : String(r.settings),
          settingsAt: num(r.settings_at)
        }))
      ),
      orStoreError("reading upstream states")
    )

    const ping = sql`SELECT 1`.pipe(Effect.asVoid, orStoreError("ping"))

    /** A small write that must reach the disk (its own transaction): fails while writes fail. */
    const probe = Effect.suspend(() =>
      sql`INSERT INTO pp_storage_probe ${sql.insert({ id: "probe", written_at: Date.now() })}
        ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`
    ).pipe(Effect.asVoid, orStoreError("probe write"))

    return {
      getJob,
      createJob,
      inputsOf,
      items,
      itemsByIndex,
      counts,
      listJobs,
      markRunning,
      finish,
      requestCancel,
      cancelRequested,
      saveItems,
      importPosts,
      trackedPosts,
      getPost,
      unfinished,
      renewClaim,
      dropClaim,
      publishBreaker,
      breakerStates,
      claimProbe,
      shareCooldown,
      publishUpstreamSettings,
      upstreamStates,
      ping,
      probe
    } as const
  })
}) {}

/** The store over whatever SqlClient is provided (the embedded SQLite file by default). */
export const layer = JobStore.Default satisfies Layer.Layer<JobStore, StoreError, SqlClient.SqlClient>

/** The API's view of a stored job with its item counts. */
export const viewOf = (job: JobRecord, counts: Counts): JobView => ({
  id: job.id,
  kind: job.kind,
  status: job.status,
  success: successOf(job.status, counts),
  ...counts,
  options: job.options,
  ...(job.idempotencyKey === undefined ? {} : { idempotencyKey: job.idempotencyKey }),
  createdAt: iso(job.createdAt),
  ...(job.startedAt === undefined ? {} : { startedAt: iso(job.startedAt) }),
  ...(job.finishedAt === undefined ? {} : { finishedAt: iso(job.finishedAt) }),
  ...(job.startedAt === undefined || job.finishedAt === undefined ? {} : { durationMs: job.finishedAt - job.startedAt })
})
