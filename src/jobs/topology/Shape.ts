/**
 * The shape of the deployment topology (`Topology.ts`) and the requests it answers, apart from the
 * service tag so that each topology's implementation (`topology/SingleProcess.ts`,
 * `topology/ClusterTopology.ts`) can name it without importing the module that imports them.
 */
import type { Effect, Scope, Stream } from "effect"
import type * as Budget from "../../engine/Budget.js"
import type { ClusterStalled } from "../Cluster.js"
import type { Instance } from "../Instances.js"
import type { PartLocks } from "../PartLocks.js"
import type { StoreError } from "../store/Sql.js"

/** `single-process`: one process owns the embedded SQLite file; `cluster`: instances share PostgreSQL. */
export type Mode = "single-process" | "cluster"

/** What admits a run's attempts besides the upstream budgets, for as long as the run's scope is open. */
export interface RunAdmission {
  /** Passed as the run's `Policy.budget`: every attempt is admitted by it. */
  readonly budget: Budget.Budget
  /** `n` of the run's items no longer need a permit (finished, or left for another run). */
  readonly done: (n: number) => void
}

export interface AdmissionRequest {
  readonly jobId: string
  /** The run's key (`job#part`): names its own budget. */
  readonly runKey: string
  /** The job's concurrency limit (its `maxConcurrent`, or its processor's). */
  readonly limit: number
  /** Items this run will ask permits for. */
  readonly pending: number
  /** `true`/`false` as storage writes work or fail, starting with the current state. */
  readonly storageWorking: Stream.Stream<boolean>
}

/**
 * How a job's progress reaches a follower. `local` is what this process publishes; `stored` reads the
 * database each time it is woken. Which one a follower gets is the topology's business.
 */
export interface FollowSources<A, E> {
  readonly local: Stream.Stream<A, E>
  readonly stored: (wakes: Stream.Stream<void>) => Stream.Stream<A, E>
}

/** How a workflow body runs a job: whole (`run`), or as parts spread over the instances, then ended. */
export interface JobSteps<E, R> {
  /** Runs every item and ends the job, in one activity. */
  readonly whole: Effect.Effect<void, E, R>
  /** Runs the job as `parts` child workflows (`index mod parts`), then ends it. */
  readonly inParts: (parts: number) => Effect.Effect<void, E, R>
  /** The job's number of items, read once and kept by the workflow (an activity): what its parts are made from. */
  readonly size: Effect.Effect<number, E, R>
}

export interface TopologyShape {
  readonly mode: Mode
  /** This instance among the runners sharing the database ("local" when alone): keys its shares. */
  readonly runnerId: string
  /** `true` when every workflow in the database runs in this process (one whose workflow ended without ending its job is ended here). */
  readonly soleRunner: boolean
  /** The workflow body's layout: one activity that ends the job, or parts (one per `JOB_MIN_ITEMS_PER_PART` items, at most `JOB_PARTITIONS`) and a final one. */
  readonly runJob: <E, R>(steps: JobSteps<E, R>) => Effect.Effect<void, E, R>
  /** Fences a part of a job to one runner at a time. */
  readonly partLocks: PartLocks
  /**
   * Admission of a run's attempts: with the embedded file, a valve that admits nothing while writes
   * fail (a result could not be stored); in a cluster, the job's share of its cluster-wide limit (the
   * cluster stops the runs itself when storage goes, since its shards go with it).
   */
  readonly admission: (request: AdmissionRequest) => Effect.Effect<RunAdmission, never, Scope.Scope>
  /** Tells followers in other instances that `jobId` has new results or has ended (nothing to do alone). */
  readonly announce: (jobId: string, change: "items" | "ended") => Effect.Effect<void>
  /** A job's live progress: what this process publishes, or (in a cluster) what the database holds, read when woken. */
  readonly follow: <A, E>(jobId: string, sources: FollowSources<A, E>) => Stream.Stream<A, E>
  /** Waits for the job's end: `local` (this process ended it), or also (in a cluster) its end stored by another instance. */
  readonly awaitEnd: <E>(
    jobId: string,
    sources: { readonly local: Effect.Effect<void, E>; readonly stored: (wakes: Stream.Stream<void>) => Effect.Effect<void, E> }
  ) => Effect.Effect<void, E>
  /** Runs when a storage outage ends, before unfinished jobs are started again. */
  readonly afterStorageOutage: Effect.Effect<void>
  /**
   * A storage probe that takes over 10 s: with the embedded file it waited for a busy process (not a
   * fault: taking it for one paused every run under a burst); PostgreSQL is another machine, and one
   * that does not answer is down.
   */
  readonly slowProbe: "busy" | "fault"
  /** The instances sharing the database: this process alone, or the cluster's runners (`Instances.ts`). */
  readonly instances: Effect.Effect<ReadonlyArray<Instance>, StoreError>
  /** Fails when this runner stalls for good (cluster only; see `Cluster.watchdog`). */
  readonly watchdog: Effect.Effect<never, ClusterStalled>
}
