/**
 * What the parts of one job running in this instance share: the job's inputs (read once), one
 * result writer (one group commit, and one announcement, per commit interval for the whole job),
 * one cancel poll, and the job's counts for live events. Each part run holds the share while it
 * runs; the last one to let go ends the writer once it has stored everything. The parts also split
 * the job's concurrency limit between their engine runs (`Member.maxConcurrent`).
 *
 * Why: in cluster mode a job runs as 12 parts, and when each part had its own writer, cancel poll
 * and reads, one instance running a whole job made 12 small commits per wave, each with a notify,
 * 12 cancel polls and 12 reads of the inputs: 0.40 statements per item against 0.08 with one part,
 * and ~50% more CPU per item than SQLite (bench-results/cluster-c1-session11/pg-extra-per-item.md).
 */
import { Duration, Effect, RcMap, Schedule, Scope } from "effect"
import * as Adjustable from "../../engine/Adjustable.js"
import type { ItemResult } from "../../engine/ItemResult.js"
import type * as RunControl from "../../engine/RunControl.js"
import type { JobEvents } from "../JobEvents.js"
import type { ItemEffect, JobStore, StoredItem, StoreError } from "../JobStore.js"
import { itemEvents, tally, type Tally } from "../Model.js"
import type { StorageHealth } from "../StorageHealth.js"
import type { TopologyShape } from "../Topology.js"
import * as ResultWriter from "./ResultWriter.js"

export interface Write {
  readonly result: ItemResult<unknown>
  readonly effect: ItemEffect | undefined
}

export interface JobShare {
  readonly inputs: ReadonlyArray<unknown>
  /** The stored results this instance knows of, by item index (a part adds its own when it starts). */
  readonly results: Map<number, ItemResult<unknown>>
  /** Queues a finished result for the job's writer; `etaMs` is the engine's estimate of the time left. */
  readonly offer: (write: Write, etaMs: number | undefined) => Effect.Effect<void>
  /** Completes once what was offered before is stored; fails once the writer gave up. */
  readonly flush: Effect.Effect<void, StoreError>
  /**
   * A part run joins for as long as the scope lasts: its control is cancelled when a cancel is
   * requested (here or in another instance) and drained when the writer gives up; `inFlight` feeds
   * the live events' count of calls in flight; `maxConcurrent` is the part's share of the job's
   * `limit` among the parts running here (see `Member`).
   */
  readonly attach: (part: number, control: RunControl.RunControl, limit: number) => Effect.Effect<Member, never, Scope.Scope>
}

export interface Member {
  readonly inFlight: (n: number) => void
  /**
   * The part's engine limit: the job's limit split evenly over the job's parts running here, moving
   * as parts come and go. Every part's run had the whole limit, so one instance running a job's 12
   * parts had 12 × 150 workers waiting on the job's one gate of 150 permits, and each run's watchdog
   * kept 150 slots: split, C1's CPU per item on one PostgreSQL instance went from 815–1,015 µs to
   * 755–810 (bench-results/cluster-c1-session12/).
   */
  readonly maxConcurrent: Adjustable.Adjustable<number>
}

export interface JobShares {
  /** The job's share, made by the first part to ask; held until the scope closes. */
  readonly get: (jobId: string) => Effect.Effect<JobShare, StoreError, Scope.Scope>
}

export interface Deps {
  readonly store: JobStore
  readonly health: StorageHealth
  readonly topology: TopologyShape
  readonly events: JobEvents
  readonly cancelPoll: Duration.Duration
  readonly commitInterval: Duration.Duration
  readonly writeRetry: Schedule.Schedule<unknown, StoreError>
}

const makeShare = (deps: Deps, jobId: string, forget: Effect.Effect<void>): Effect.Effect<JobShare, StoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const { store, health, topology, events } = deps
    const inputs = yield* store.inputsOf(jobId)
    // The job's counts over every part, stored ones included, for the live events.
    const counts: Tally = { ...(yield* store.counts({ id: jobId, total: inputs.length })) }
    const results = new Map<number, ItemResult<unknown>>()
    const etas = new Map<number, number>()
    const inFlight = new Map<number, number>()
    const controls = new Set<RunControl.RunControl>()
    const allotments = new Map<number, Adjustable.Adjustable<number>>()
    let limit = 1
    /** What every part's allotment was last set to: a new part starts at the share it will get. */
    let allotted = 0
    const shareOf = (parts: number) => Math.max(1, Math.ceil(limit / Math.max(1, parts)))
    // Only a change is set: each set reaches the part's engine run (`Adjustable.changes`).
    const rebalance = Effect.suspend(() => {
      const each = shareOf(allotments.size)
      if (each === allotted) return Effect.void
      allotted = each
      return Effect.forEach(allotments.values(), (allotment) => allotment.set(each), { discard: true })
    })
    let cancelled = false
    let gaveUp = false
    // The writer's failures count as a storage outage until one of its own writes works.
    const writerKey = `results:${jobId}`
    const writer = yield* ResultWriter.make<Write, StoredItem>({
      save: (batch) => store.saveItems(jobId, batch, Date.now()),
      onStored: (saved) =>
        Effect.gen(function* () {
          yield* topology.announce(jobId, "items")
          const subscribed = events.isSubscribed(jobId)
          let calling = 0
          if (subscribed) for (const n of inFlight.values()) calling += n
          for (const item of saved) {
            results.set(item.index, item.result)
            tally(counts, item.result.status)
            const etaMs = etas.get(item.index)
            etas.delete(item.index)
            const eta = etaMs !== undefined && counts.total - counts.completed > 0 ? { etaMs } : {}
            // Built only for a subscriber: a sync batch waits for the end alone, and this is per item.
            if (subscribed) for (const event of itemEvents(jobId, item, counts, { inFlight: calling, ...eta })) yield* events.publish(event)
          }
        }),
      commitInterval: deps.commitInterval,
      retry: deps.writeRetry,
      reports: {
        failed: (error) => health.failed(writerKey, error),
        succeeded: health.succeeded(writerKey),
        release: health.release(writerKey)
      },
      annotations: { job: jobId }
    })
    // Last to let go: what is still queued is stored before the share goes.
    yield* Effect.addFinalizer(() => Effect.ignore(writer.end))

    const each = (f: (control: RunControl.RunControl) => Effect.Effect<void>) =>
      Effect.forEach(Array.from(controls), f, { discard: true })
    // A writer that gave up (storage failed for the whole retry window) ends every part's run at once:
    // what finishes now could not be stored either. The next run of a part gets a new share.
    yield* writer.gaveUp.pipe(
      Effect.zipRight(Effect.suspend(() => {
        gaveUp = true
        return Effect.zipRight(forget, each((control) => control.drain(Duration.zero)))
      })),
      Effect.interruptible,
      Effect.forkScoped
    )
    // A cancel may come from another process sharing the database; poll the flag.
    yield* store.cancelRequested(jobId).pipe(
      Effect.flatMap((requested) =>
        requested && !cancelled
          ? Effect.suspend(() => {
              cancelled = true
              return each((control) => control.cancel)
            })
          : Effect.void
      ),
      Effect.catchAll(() => Effect.void),
      Effect.repeat(Schedule.spaced(deps.cancelPoll)),
      Effect.interruptible,
      Effect.forkScoped
    )

    return {
      inputs,
      results,
      offer: (write, etaMs) =>
        Effect.suspend(() => {
          if (etaMs !== undefined) etas.set(write.result.index, etaMs)
          return writer.offer(write)
        }),
      flush: writer.flush,
      attach: (part, control, jobLimit) =>
        Effect.gen(function* () {
          controls.add(control)
          limit = jobLimit
          const maxConcurrent = yield* Adjustable.make(shareOf(allotments.size + 1))
          allotments.set(part, maxConcurrent)
          yield* rebalance
          yield* Effect.addFinalizer(() =>
            Effect.suspend(() => {
              controls.delete(control)
              inFlight.delete(part)
              allotments.delete(part)
              return rebalance
            })
          )
          if (cancelled) yield* control.cancel
          if (gaveUp) yield* control.drain(Duration.zero)
          return { inFlight: (n: number) => void inFlight.set(part, n), maxConcurrent }
        })
    } satisfies JobShare
  })

/** One share per job for as long as some part of it runs here. */
export const make = (deps: Deps): Effect.Effect<JobShares, never, Scope.Scope> =>
  Effect.gen(function* () {
    const shares: RcMap.RcMap<string, JobShare, StoreError> = yield* RcMap.make({
      lookup: (jobId: string) => makeShare(deps, jobId, RcMap.invalidate(shares, jobId))
    })
    return { get: (jobId) => RcMap.get(shares, jobId) }
  })
