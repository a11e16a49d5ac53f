/**
 * The workflows jobs run as: one `Job` workflow per job, laid out by the topology — one activity that
 * runs every item and ends the job (one process), or `JobPart` child workflows the cluster spreads
 * over the runners' shards and a last activity that ends it — and the activity bodies, which never
 * end on a storage failure, and end failed on a stored row that no longer decodes.
 */
import * as Activity from "@effect/workflow/Activity"
import * as Workflow from "@effect/workflow/Workflow"
import { Duration, Effect, Layer, ParseResult, Schema } from "effect"
import { JobRunner } from "./JobRunner.js"
import type { StoreError } from "./JobStore.js"
import { ANONYMOUS, StorageHealth } from "./StorageHealth.js"
import { Topology } from "./Topology.js"

/**
 * A job's stored row (the job, its inputs or a result) no longer decodes: edited by hand, or written
 * by a version whose schema this one does not accept. Every read fails the same way, so waiting for
 * storage cannot help; the job's workflow ends failed with this, and the row stays for someone to
 * repair or delete.
 */
export class UndecodableJob extends Schema.TaggedError<UndecodableJob>()("UndecodableJob", {
  jobId: Schema.String,
  message: Schema.String
}) {}

/** One workflow type for every job; the job's own row says what to run. */
export const JobWorkflow = Workflow.make({
  name: "Job",
  payload: { jobId: Schema.String },
  error: UndecodableJob,
  idempotencyKey: ({ jobId }) => jobId
})

/** One slice of a job (items whose index mod `parts` is `part`); its own entity, so its own shard. */
export const JobPartWorkflow = Workflow.make({
  name: "JobPart",
  payload: { jobId: Schema.String, part: Schema.Number, parts: Schema.Number },
  error: UndecodableJob,
  idempotencyKey: ({ jobId, part, parts }) => `${jobId}/${part}/${parts}`
})

/**
 * A row that does not decode, as the store reports it: caused by a `ParseError` — a row schema's (the
 * job's row, its inputs) or the item rows' own check's (`store/JobTable.ts`, `undecodableItemRow`).
 */
const isUndecodable = (error: StoreError): boolean => ParseResult.isParseError(error.cause)

/**
 * Runs `self` (an activity's body) until it ends other than on a storage failure. A failed read or
 * write must never end the activity: the engine stores an activity's failure as its result, and the
 * workflow's with it (`cluster_replies`), and replays a stored result forever — a job whose storage
 * failed stayed `running` for good, through restarts ("resumed", 0 calls) and DELETE. So the activity
 * waits until writes work again (interruptibly: a shutdown ends it unrecorded, and it runs again after
 * the restart, or on the runner that takes the shard over) and runs again from what is stored.
 */
export const untilStored = <A>(
  self: Effect.Effect<A, StoreError>,
  health: StorageHealth,
  jobId: string
): Effect.Effect<A, UndecodableJob> => {
  const attempt = (n: number): Effect.Effect<A, UndecodableJob> =>
    Effect.catchTag(self, "StoreError", (error) =>
      isUndecodable(error) ? undecodable(error, jobId) : health.failed(ANONYMOUS, error).pipe(
        Effect.zipRight(Effect.logDebug(`job waits for storage: ${error.message}`).pipe(Effect.annotateLogs({ job: jobId }))),
        Effect.zipRight(
          Effect.interruptible(
            Effect.zipRight(health.awaitWorking, Effect.sleep(Duration.millis(Math.min(5_000, 200 * 2 ** Math.min(n, 5)))))
          )
        ),
        Effect.zipRight(Effect.suspend(() => attempt(n + 1)))
      )
    )
  return attempt(0)
}

/** Not a storage outage (the probe writes fine, and new jobs are accepted): this job alone ends, failed. */
const undecodable = (error: StoreError, jobId: string): Effect.Effect<never, UndecodableJob> => {
  const detail = ParseResult.isParseError(error.cause) ? `${error.message}: ${error.cause.message}` : error.message
  const message = `job ${jobId} cannot run: a stored row of it no longer decodes (${detail}). Its workflow ends failed; repair or delete the row`
  return Effect.logError(message).pipe(
    Effect.annotateLogs({ job: jobId }),
    Effect.zipRight(new UndecodableJob({ jobId, message }))
  )
}

const runItems = (
  runner: JobRunner,
  health: StorageHealth,
  jobId: string,
  slice: { readonly part: number; readonly parts: number },
  finalizeAfter: boolean
) =>
  Activity.make({
    name: `run-items-${slice.part}`,
    error: UndecodableJob,
    execute: untilStored(runner.execute(jobId, slice, finalizeAfter), health, jobId).pipe(
      // Paused by shutdown: the activity must not complete, so it runs again after the restart (or on
      // the runner that takes over the shard).
      Effect.flatMap((outcome) => (outcome === "paused" ? Effect.interruptible(Effect.never) : Effect.void))
    )
  })

/**
 * The workflow bodies. Items are not activities of their own: each activity costs ~3–4 ms of CPU in
 * the cluster (measured: 2,000 × 20 ms items at 50 concurrent took 8–11× the ideal), so item results
 * are committed to our own table instead, which gives the same guarantee — a finished item is never
 * run again — at ~0.1 ms. With one runner a job is one activity; with a shared database it is split
 * into child workflows (one per `JOB_MIN_ITEMS_PER_PART` items, at most `JOB_PARTITIONS`), which the
 * cluster spreads over the runners' shards.
 */
export const JobWorkflowLive = Layer.mergeAll(
  JobWorkflow.toLayer(({ jobId }) =>
    Effect.gen(function* () {
      const runner = yield* JobRunner
      const health = yield* StorageHealth
      const topology = yield* Topology
      yield* topology.runJob({
        whole: runItems(runner, health, jobId, { part: 0, parts: 1 }, true),
        inParts: (parts) =>
          Effect.zipRight(
            Effect.forEach(
              Array.from({ length: parts }, (_, part) => part),
              (part) => JobPartWorkflow.execute({ jobId, part, parts }),
              { concurrency: "unbounded", discard: true }
            ),
            Activity.make({
              name: "finalize",
              error: UndecodableJob,
              execute: untilStored(runner.finalize(jobId, Date.now()), health, jobId)
            })
          ),
        // An activity, so a replay after a restart lays the job out as it first did, whatever the
        // configuration says by then.
        size: Activity.make({
          name: "size",
          success: Schema.Number,
          error: UndecodableJob,
          execute: untilStored(runner.size(jobId), health, jobId)
        })
      })
    })
  ),
  JobPartWorkflow.toLayer(({ jobId, part, parts }) =>
    Effect.flatMap(Effect.all([JobRunner, StorageHealth]), ([runner, health]) => runItems(runner, health, jobId, { part, parts }, false))
  )
)
