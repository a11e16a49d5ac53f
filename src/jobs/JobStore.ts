/**
 * The job store: jobs with their inputs and item results (`store/JobTable.ts`), tracked posts
 * (`store/PostTable.ts`), and the database's health (`ping`, the probe write), over whatever
 * `SqlClient` is provided — SQLite and PostgreSQL both accept its SQL. The schema is migrated before
 * the store is used (`store/Migrations.ts`). What instances sharing PostgreSQL coordinate through
 * (concurrency shares, breaker states, upstream cooldowns and settings) is the `CoordinationStore`
 * (`store/Coordination.ts`).
 */
import { SqlClient } from "@effect/sql"
import { Effect, type Layer } from "effect"
import { successOf, type Counts, type JobView } from "./Model.js"
import * as JobTable from "./store/JobTable.js"
import { StoreSchema } from "./store/Migrations.js"
import * as PostTable from "./store/PostTable.js"
import { orStoreError, type StoreError } from "./store/Sql.js"

export { StoreError } from "./store/Sql.js"
export type { JobRecord, NewJob, StoredItem } from "./store/JobTable.js"
export type { ItemEffect, TrackedPostRecord } from "./store/PostTable.js"

export class JobStore extends Effect.Service<JobStore>()("parallel-processor/JobStore", {
  effect: Effect.gen(function* () {
    yield* StoreSchema
    const sql = yield* SqlClient.SqlClient
    const posts = yield* PostTable.make
    const jobs = yield* JobTable.make(posts.recordEffects)

    const ping = sql`SELECT 1`.pipe(Effect.asVoid, orStoreError("ping"))

    /** A small write that must reach the disk (its own transaction): fails while writes fail. */
    const probe = Effect.suspend(() =>
      sql`INSERT INTO pp_storage_probe ${sql.insert({ id: "probe", written_at: Date.now() })}
        ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`
    ).pipe(Effect.asVoid, orStoreError("probe write"))

    return {
      ...jobs,
      importPosts: posts.importPosts,
      trackedPosts: posts.trackedPosts,
      getPost: posts.getPost,
      ping,
      probe
    } as const
  }),
  dependencies: [StoreSchema.Default]
}) {}

/** The store over whatever SqlClient is provided (the embedded SQLite file by default). */
export const layer = JobStore.Default satisfies Layer.Layer<JobStore, StoreError, SqlClient.SqlClient>

const iso = (ms: number) => new Date(ms).toISOString()

/** The API's view of a stored job with its item counts. */
export const viewOf = (job: JobTable.JobRecord, counts: Counts): JobView => ({
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
