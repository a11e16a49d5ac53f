/**
 * Ending a job: once every item has a result it is marked completed (or cancelled, when a cancel was
 * asked) and its followers are told, here and in other instances; a job that no run will end any more
 * (its workflow ended without it) has its missing items stored as cancelled, then ends.
 */
import { Effect } from "effect"
import type { ItemResult } from "../../engine/ItemResult.js"
import type { JobEvents } from "../JobEvents.js"
import { viewOf, type JobStore, type StoreError } from "../JobStore.js"
import type { TopologyShape } from "../Topology.js"
import type { RunRegistry } from "./RunRegistry.js"

export interface JobEnd {
  /** Marks a job whose items all have results as ended, and tells its followers. */
  readonly finalize: (jobId: string, startedAt: number) => Effect.Effect<void, StoreError>
  /** Ends a job no run will end: the items without a result are stored as cancelled, then the job (its cancel was asked for). */
  readonly endStranded: (jobId: string) => Effect.Effect<void, StoreError>
}

export const make = (deps: {
  readonly store: JobStore
  readonly topology: TopologyShape
  readonly registry: RunRegistry
  readonly events: JobEvents
}): JobEnd => {
  const { store, topology, registry, events } = deps

  const finalize = (jobId: string, startedAt: number) =>
    Effect.gen(function* () {
      const job = yield* store.getJob(jobId)
      if (job === undefined || job.status === "completed" || job.status === "cancelled") return
      const status = job.cancelRequested || registry.cancelAsked(jobId) ? "cancelled" : "completed"
      const finishedAt = Date.now()
      yield* store.finish(jobId, status, finishedAt)
      yield* topology.announce(jobId, "ended")
      registry.forget(jobId)
      const counts = yield* store.counts(job)
      const finished = yield* store.getJob(jobId)
      if (finished !== undefined) yield* events.publish({ type: "completed", jobId, job: viewOf(finished, counts) })
      yield* Effect.logInfo(
        `job ${status}: ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.cancelled} cancelled, ${counts.skipped} skipped`
      ).pipe(Effect.annotateLogs({ job: jobId, kind: job.kind, durationMs: finishedAt - (job.startedAt ?? startedAt) }))
    })

  const endStranded = (jobId: string): Effect.Effect<void, StoreError> =>
    Effect.gen(function* () {
      const job = yield* store.getJob(jobId)
      if (job === undefined || job.status === "completed" || job.status === "cancelled") return
      // Remembered as asked here, so `finalize` ends it cancelled even before the stored flag lands.
      yield* registry.cancel(jobId)
      const stored = new Set((yield* store.items(jobId)).map((item) => item.index))
      const missing: Array<{ readonly result: ItemResult<unknown> }> = []
      for (let index = 0; index < job.total; index++) {
        if (stored.has(index)) continue
        missing.push({
          result: {
            index,
            status: "cancelled",
            attempts: 0,
            durationMs: 0,
            error: { type: "cancelled", message: "the job was cancelled before this item finished", retryable: false }
          }
        })
      }
      // In slices: one INSERT binds 6 values per row, and SQLite allows 32,766 per statement.
      for (let from = 0; from < missing.length; from += 1_000) {
        yield* store.saveItems(jobId, missing.slice(from, from + 1_000), Date.now())
      }
      yield* Effect.logWarning(`job ended: its workflow had ended without it; ${missing.length} item(s) cancelled`).pipe(
        Effect.annotateLogs({ job: jobId })
      )
      yield* finalize(jobId, Date.now())
    })

  return { finalize, endStranded }
}
