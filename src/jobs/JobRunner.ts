/**
 * The job runner of this process: runs parts of jobs (`runner/PartRun.ts`) as their workflows'
 * activities ask, ends jobs, cancels the runs of a job here, publishes live events to the in-process
 * followers, and drains the live runs on shutdown. It only wires its pieces, each in `runner/`: the
 * kinds of job (`JobKinds`), what a job's parts here share (`JobShare`: inputs, the result writer, the cancel poll), the live runs (`RunRegistry`),
 * shutdown coordination (`Shutdown`) and the end of a job (`JobEnd`).
 */
import { Config, Duration, Effect, Layer } from "effect"
import * as JobEvents from "./JobEvents.js"
import { JobStore, type StoreError } from "./JobStore.js"
import * as JobEnd from "./runner/JobEnd.js"
import * as JobKinds from "./runner/JobKinds.js"
import * as JobShare from "./runner/JobShare.js"
import * as PartRun from "./runner/PartRun.js"
import * as ResultWriter from "./runner/ResultWriter.js"
import * as RunRegistry from "./runner/RunRegistry.js"
import * as Shutdown from "./runner/Shutdown.js"
import { StorageHealth } from "./StorageHealth.js"
import { Topology } from "./Topology.js"

export { awaitWithin } from "./runner/Shutdown.js"
export { partsRunning } from "./runner/RunRegistry.js"
export type { RunOutcome } from "./runner/RunRegistry.js"

export class JobRunner extends Effect.Service<JobRunner>()("parallel-processor/JobRunner", {
  scoped: Effect.gen(function* () {
    const store = yield* JobStore
    const health = yield* StorageHealth
    const topology = yield* Topology
    const grace = yield* Config.duration("SHUTDOWN_GRACE_PERIOD").pipe(Config.withDefault(Duration.seconds(10)))
    const cancelPoll = yield* Config.duration("JOB_CANCEL_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(500)))
    // Group commit: results that finish within this window share one transaction. A crash can lose
    // at most this window of finished results (those items run again).
    const commitInterval = yield* Config.duration("JOB_COMMIT_INTERVAL").pipe(Config.withDefault(Duration.millis(5)))
    // How long a batch of finished results is retried while the database does not answer or refuses
    // writes (a full disk, a read-only file, an I/O error). Past it the run stops and its unstored
    // items run again once storage works (at-least-once); it also bounds how long a shutdown or a
    // hand-over waits for a writer that cannot write.
    const writeRetry = ResultWriter.retryWithin(
      yield* Config.duration("JOB_STORE_RETRY_WINDOW").pipe(Config.withDefault(Duration.seconds(60)))
    )
    const events = yield* JobEvents.make
    const registry = yield* RunRegistry.make
    const shutdown = yield* Shutdown.make(registry, grace)
    const jobEnd = JobEnd.make({ store, topology, registry, events })
    // Made before the drain's finalizer is added, so released after it: the drained runs' writers
    // store what they hold first.
    const shares = yield* JobShare.make({ store, health, topology, events, cancelPoll, commitInterval, writeRetry })
    const deps: PartRun.PartRunDeps = {
      store,
      health,
      topology,
      registry,
      shutdown,
      kinds: yield* JobKinds.make,
      events,
      jobEnd,
      shares,
      scope: yield* Effect.scope,
      grace
    }
    yield* Effect.addFinalizer(() => shutdown.drain)

    return {
      /**
       * Runs the job's items that belong to `slice` (index mod parts = part) and have no stored
       * result. With `finalizeAfter`, also ends the job (the single-runner case, one slice).
       */
      execute: (
        jobId: string,
        slice: PartRun.Slice = { part: 0, parts: 1 },
        finalizeAfter = true
      ): Effect.Effect<RunOutcome, StoreError> => PartRun.execute(deps, jobId, slice, finalizeAfter),
      /** Shutdown: stop handing out items, let running attempts finish (grace period), store them. */
      drain: shutdown.drain,
      /** Cancels a job running in this process now; other processes see the stored flag. */
      cancelLocal: registry.cancel,
      endStranded: jobEnd.endStranded,
      /** The job's number of items (0 for a job not stored). */
      size: (jobId: string): Effect.Effect<number, StoreError> => Effect.map(store.getJob(jobId), (job) => job?.total ?? 0),
      events,
      shuttingDown: shutdown.began,
      finalize: jobEnd.finalize,
      isLive: registry.isLive
    } as const
  })
}) {
  /**
   * Drains running jobs when it is released. It must be released before the workflow entities are
   * unregistered (which interrupts their activities, and with them the attempts in flight), so it is
   * built on top of them.
   */
  static readonly drainOnShutdown = Layer.scopedDiscard(
    Effect.flatMap(JobRunner, (runner) => Effect.addFinalizer(() => runner.drain))
  )
}

type RunOutcome = RunRegistry.RunOutcome
