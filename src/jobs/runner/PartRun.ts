/**
 * One run of a part of a job: the items of the part (index mod parts = part) that have no stored
 * result go through their kind's engine, each result is stored as it finishes (the result writer),
 * and the run stops early on a cancel (here or stored by another instance), a shutdown, a hand-over
 * (the cluster moved the part away) or a writer that cannot store. This is the body of a part's
 * durable activity: after a crash the workflow runs it again, and it picks up what has no result.
 */
import { Deferred, Duration, Effect, ExecutionStrategy, Exit, Fiber, Scope } from "effect"
import * as Budget from "../../engine/Budget.js"
import * as RunControl from "../../engine/RunControl.js"
import type { JobEvents } from "../JobEvents.js"
import type { JobStore, StoreError } from "../JobStore.js"
import type { JobKind } from "../Model.js"
import type { StorageHealth } from "../StorageHealth.js"
import type { TopologyShape } from "../Topology.js"
import type { JobEnd } from "./JobEnd.js"
import type { JobKindRunner } from "./JobKinds.js"
import type { JobShares } from "./JobShare.js"
import type { RunOutcome, RunRegistry } from "./RunRegistry.js"
import type { Shutdown } from "./Shutdown.js"

export interface Slice {
  readonly part: number
  readonly parts: number
}

export interface PartRunDeps {
  readonly store: JobStore
  readonly health: StorageHealth
  readonly topology: TopologyShape
  readonly registry: RunRegistry
  readonly shutdown: Shutdown
  readonly kinds: Record<JobKind, JobKindRunner>
  readonly events: JobEvents
  readonly jobEnd: JobEnd
  /** What the parts of a job running here share (inputs, result writer, cancel poll). */
  readonly shares: JobShares
  /** Outlives every run: the run's fibers live here, so a hand-over can let its calls finish. */
  readonly scope: Scope.Scope
  readonly grace: Duration.Duration
}

/**
 * Runs the job's items that belong to `slice` and have no stored result. With `finalizeAfter`, also
 * ends the job (the single-process case, one slice).
 */
export const execute = (
  deps: PartRunDeps,
  jobId: string,
  slice: Slice,
  finalizeAfter: boolean
): Effect.Effect<RunOutcome, StoreError> =>
  Effect.gen(function* () {
    const { store, health, topology, registry, shutdown, scope, grace } = deps
    // Shutting down: start nothing (the cluster retries interrupted activities); the work resumes
    // after the restart or on the instance that takes the shard over.
    if (yield* shutdown.isShuttingDown) return "paused"
    const runKey = `${jobId}#${slice.part}`
    const running = registry.join(runKey)
    if (running !== undefined) return yield* running
    // The cluster may have moved this part here while the runner it left is still finishing the
    // calls it had in flight: wait until that runner has stored them and let go of the part.
    if (!(yield* topology.partLocks.hold(jobId, slice.part, shutdown.isShuttingDown))) return "paused"
    if (yield* shutdown.isShuttingDown) return "paused"
    const job = yield* store.getJob(jobId)
    if (job === undefined || job.status === "completed" || job.status === "cancelled") return "finished"
    const share = yield* deps.shares.get(jobId)
    const { inputs, results } = share
    // Read after this instance took the part: what the part's previous runner stored is in it.
    const stored = yield* store.itemsOfPart(jobId, slice.part, slice.parts)
    for (const item of stored) results.set(item.index, item.result)
    const mine = (index: number) => index % slice.parts === slice.part
    const pending = inputs.flatMap((input, index) => (results.has(index) || !mine(index) ? [] : [{ index, input }]))
    const startedAt = Date.now()
    const kind = deps.kinds[job.kind]
    yield* Effect.annotateCurrentSpan({
      "job.kind": job.kind,
      processor: kind.processor,
      "job.items": pending.length,
      "job.stored": stored.length
    })
    yield* store.markRunning(jobId, startedAt)
    yield* Effect.logInfo(
      stored.length === 0 ? "job started" : `job resumed: ${stored.length} of the part's ${stored.length + pending.length} items already done`
    ).pipe(Effect.annotateLogs({ job: jobId, kind: job.kind, part: slice.part }))

    const control = yield* RunControl.make
    const registration = yield* registry.register(runKey, jobId, control)
    if (registration._tag === "Joined") return yield* registration.outcome
    const { done } = registration.run
    // Checked again once registered: a drain that began while this run was reading the database
    // has taken its list of runs already, and would not wait for this one.
    if (yield* shutdown.isShuttingDown) return "paused" as const

    const logAnnotations = { job: jobId, part: slice.part }
    const limit = job.options.maxConcurrent ?? (yield* kind.maxConcurrent)
    // Cancel requests (here or stored by another instance) and a writer that gave up reach the run
    // through the job's share.
    const member = yield* share.attach(slice.part, control, limit)
    if (job.cancelRequested || registry.cancelAsked(jobId)) yield* control.cancel

    // Draining (shutdown, hand-over) is the engine's: no item is taken and no call starts any more —
    // not a retry, not one waiting for admission — while the calls in flight finish within the grace
    // period and are stored; the rest get no result and run in the next run. Every call of the run
    // is admitted by an upstream budget as this run's tenant, which the drain stops.
    const tenant = Budget.tenant(runKey, job.options.priority ?? "normal")
    // Besides the upstream budgets, the topology admits the run's attempts: a storage valve (one
    // process) or the job's cluster-wide share. Held until the run's cleanup.
    // A child of the run's scope, closed once: by the cleanup, which takes it out of the run's scope,
    // or by the run's scope if the run fails before its cleanup.
    const admissionScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const admission = yield* topology
      .admission({
        jobId,
        runKey,
        limit,
        pending: pending.length,
        storageWorking: health.changes
      })
      .pipe(Scope.extend(admissionScope))

    const runFiber = yield* kind
      .run(
        pending.map((p) => p.input),
        jobId,
        {
          // A deadline counts from the job's first start (stored), not from this run's: a job resumed
          // after a restart keeps the deadline it began with, and one resumed after it ends its
          // unfinished items deadline_exceeded without calling anyone.
          overrides: {
            ...job.options,
            // One of several parts: its share of the job's limit among the parts running here. The
            // whole job in one run (one process) keeps following the processor's own setting when
            // the job set none, so a PATCH of the processor's limit reaches a run already going.
            ...(slice.parts > 1 ? { maxConcurrent: member.maxConcurrent } : {}),
            ...(job.options.deadlineSeconds === undefined
              ? {}
              : { deadlineAt: (job.startedAt ?? startedAt) + job.options.deadlineSeconds * 1000 })
          },
          control,
          onFinished: ({ result, effect, etaMs }) =>
            Effect.suspend(() => {
              const original = pending[result.index]
              if (original === undefined) return Effect.void
              return share.offer({ result: { ...result, index: original.index }, effect }, etaMs)
            }),
          onInFlight: member.inFlight,
          admission,
          tenant
        }
      )
      .pipe(
        // The activity runs uninterruptibly inside the cluster; the engine needs interruption for
        // its timeouts and for cancel, so its region is made interruptible again.
        Effect.interruptible,
        Effect.forkIn(scope)
      )
    const drainer = yield* Deferred.await(shutdown.began).pipe(
      Effect.zipRight(control.drain(grace)),
      Effect.interruptible,
      Effect.forkIn(scope)
    )
    const cleanup = Effect.uninterruptible(
      Effect.gen(function* () {
        yield* Fiber.interrupt(runFiber)
        yield* Fiber.interrupt(drainer)
        yield* Scope.close(admissionScope, Exit.void)
        // What finished is still stored, even when this run was interrupted. A writer that gave up
        // fails the run: the activity waits for storage to work and runs the unstored items again.
        yield* share.flush
      })
    )
    // Interruptible although the cluster runs activities uninterruptibly: when this runner loses
    // the shard (an instance joined, or this one stops), the run must stop here, or it would run on
    // two runners. It hands over like a shutdown: no new items, the calls in flight get the grace
    // period to finish and are stored, so the runner taking over does not call them again.
    const handOver = Effect.gen(function* () {
      yield* Effect.logInfo("handing over: letting the calls in flight finish").pipe(
        Effect.annotateLogs({ ...logAnnotations, calling: tenant.calling })
      )
      const began = Date.now()
      yield* control.drain(grace)
      yield* Fiber.await(runFiber)
      yield* cleanup
      yield* Effect.logInfo("handed over").pipe(Effect.annotateLogs({ ...logAnnotations, waitedMs: Date.now() - began }))
    })
    yield* Effect.interruptible(Fiber.join(runFiber)).pipe(Effect.onInterrupt(() => Effect.ignore(handOver)))
    yield* cleanup

    const allMineDone = () => inputs.every((_, index) => !mine(index) || results.has(index))
    if (!allMineDone()) {
      // Another process may have stored some of these items (a re-run after a failover).
      for (const item of yield* store.itemsOfPart(jobId, slice.part, slice.parts)) results.set(item.index, item.result)
    }
    if (!allMineDone()) {
      // Only a shutdown can leave items without a result; the workflow resumes them on restart.
      yield* Effect.logInfo("job paused for shutdown").pipe(Effect.annotateLogs(logAnnotations))
      return "paused" as const
    }
    if (finalizeAfter) yield* deps.jobEnd.finalize(jobId, startedAt)
    else yield* Effect.logInfo("part finished").pipe(Effect.annotateLogs(logAnnotations))
    yield* Deferred.succeed(done, "finished")
    return "finished" as const
  }).pipe(
    Effect.scoped,
    Effect.tap((outcome) => Effect.annotateCurrentSpan("job.outcome", outcome)),
    // The job's span (one per part run): the engine's item spans are its children (README, "Traces").
    Effect.withSpan("JobRunner.execute", {
      attributes: { "job.id": jobId, "job.part": slice.part, "job.parts": slice.parts },
      captureStackTrace: false
    })
  )
