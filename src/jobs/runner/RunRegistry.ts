/**
 * The runs live in this process, by run key (`job#part`), and the cancels asked of them. The cluster
 * may deliver a part's activity again while it runs here (a retry after an interruption): the second
 * delivery joins the run in progress instead of starting another beside it. A cancel asked here is
 * remembered until the job ends, so a run that starts later (after a storage outage kept its stored
 * flag from being written) still sees it.
 */
import { Deferred, Effect, Metric, type Scope } from "effect"
import type * as RunControl from "../../engine/RunControl.js"

/** Registered here, from registration to the end of the run's cleanup (every registry of the process). */
export const partsRunning = Metric.gauge("pp_job_parts_running", {
  description: "parts of jobs running in this process (a whole job counts as one part when it is not split)"
})

/** `paused`: the run stopped before every item had a result (a shutdown, a hand-over); it resumes later. */
export type RunOutcome = "finished" | "paused"

export interface LiveRun {
  readonly jobId: string
  readonly control: RunControl.RunControl
  readonly done: Deferred.Deferred<RunOutcome>
}

export type Registration =
  | { readonly _tag: "Registered"; readonly run: LiveRun }
  /** Another run of this key is live: its outcome is this delivery's. */
  | { readonly _tag: "Joined"; readonly outcome: Effect.Effect<RunOutcome> }

export interface RunRegistry {
  /** The live run of `runKey`'s outcome, if one is live. */
  readonly join: (runKey: string) => Effect.Effect<RunOutcome> | undefined
  /**
   * Registers a run of `runKey` until the scope closes, or joins the one already there. However the
   * run ends — even interrupted halfway through its own cleanup — closing the scope removes it and
   * releases whoever joined it (as `paused` unless it finished): a stale entry would make the next
   * delivery of this part wait on a run that no longer exists.
   */
  readonly register: (runKey: string, jobId: string, control: RunControl.RunControl) => Effect.Effect<Registration, never, Scope.Scope>
  /** Cancels the job's runs here now, and remembers the cancel for runs that start later. */
  readonly cancel: (jobId: string) => Effect.Effect<void>
  /** Whether a cancel of the job was asked in this process. */
  readonly cancelAsked: (jobId: string) => boolean
  /** The job ended: its cancel need not be remembered any more. */
  readonly forget: (jobId: string) => void
  readonly isLive: (jobId: string) => boolean
  /** The live runs, by key. */
  readonly runs: () => ReadonlyArray<readonly [string, LiveRun]>
}

export const make: Effect.Effect<RunRegistry> = Effect.sync(() => {
  const live = new Map<string, LiveRun>()
  const cancels = new Set<string>()

  const register = (runKey: string, jobId: string, control: RunControl.RunControl) =>
    Effect.gen(function* () {
      const existing = live.get(runKey)
      if (existing !== undefined) return { _tag: "Joined", outcome: Deferred.await(existing.done) } satisfies Registration
      const run: LiveRun = { jobId, control, done: yield* Deferred.make<RunOutcome>() }
      live.set(runKey, run)
      yield* Metric.increment(partsRunning)
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          if (live.get(runKey) === run) live.delete(runKey)
          return Effect.zipRight(Metric.modify(partsRunning, -1), Deferred.succeed(run.done, "paused"))
        })
      )
      return { _tag: "Registered", run } satisfies Registration
    }).pipe(Effect.uninterruptible)

  return {
    join: (runKey) => {
      const existing = live.get(runKey)
      return existing === undefined ? undefined : Deferred.await(existing.done)
    },
    register,
    cancel: (jobId) =>
      Effect.suspend(() => {
        cancels.add(jobId)
        return Effect.forEach(
          Array.from(live.values()).filter((run) => run.jobId === jobId),
          (run) => run.control.cancel,
          { discard: true }
        )
      }),
    cancelAsked: (jobId) => cancels.has(jobId),
    forget: (jobId) => {
      cancels.delete(jobId)
    },
    isLive: (jobId) => Array.from(live.values()).some((run) => run.jobId === jobId),
    runs: () => Array.from(live.entries())
  }
})
