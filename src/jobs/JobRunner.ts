/**
 * Runs one job's items through its processor's engine and commits each result as it finishes. This
 * is the body of the job's durable activity: after a crash the workflow runs it again, and it picks
 * up only the items that have no stored result. Also the in-process hub that live progress streams
 * and waiting requests listen to, and the place that drains running jobs on shutdown.
 */
import { Config, Deferred, Duration, Effect, Exit, Fiber, Layer, Mailbox, Schedule, Schema, Scope, Stream } from "effect"
import * as Budget from "../engine/Budget.js"
import type { ItemResult } from "../engine/ItemResult.js"
import * as ClusterGate from "./ClusterGate.js"
import type { LocalGate } from "./ClusterGate.js"
import * as RunControl from "../engine/RunControl.js"
import { IntradayTriggersProcessor } from "../processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../processors/Interactions.js"
import { PostGenerationProcessor } from "../processors/PostGeneration.js"
import type * as Processor from "../processors/Processor.js"
import { runnerId } from "./Cluster.js"
import * as Database from "./Database.js"
import * as JobEvents from "./JobEvents.js"
import * as PartLocks from "./PartLocks.js"
import { StorageHealth } from "./StorageHealth.js"
import { JobStore, viewOf, type ItemEffect, type StoreError } from "./JobStore.js"
import { emptyTally, itemEvents, kindSchemas, tally, type JobKind } from "./Model.js"

/** How a kind's items run and what a finished item changes besides its own row. */
interface KindRunner {
  readonly run: (
    inputs: ReadonlyArray<unknown>,
    jobId: string,
    options: {
      readonly overrides: Processor.Overrides
      readonly control: RunControl.RunControl
      readonly source: (all: ReadonlyArray<unknown>) => Iterable<unknown>
      readonly onFinished: (result: ItemResult<unknown>, effect: ItemEffect | undefined) => Effect.Effect<void>
      readonly onInFlight: (n: number) => void
      /** Admits every attempt: the job's cluster-wide share (with a shared database). */
      readonly admit: Budget.Budget | undefined
      /** The run at the upstream budgets: its turn, and what a drain stops. */
      readonly tenant: Budget.Tenant
      /** A cluster-wide limit, told how many items this run still needs permits for. */
      readonly gate?: LocalGate | undefined
    }
  ) => Effect.Effect<void>
  readonly maxConcurrent: Effect.Effect<number>
}

const kindRunner = <I, A>(
  processor: Processor.Processor<I, A>,
  input: Schema.Schema<I, I>,
  effectOf: (item: I, result: ItemResult<A>, jobId: string) => ItemEffect | undefined
): KindRunner => ({
  maxConcurrent: processor.maxConcurrent.get,
  run: (inputs, jobId, options) =>
    Effect.gen(function* () {
      // Inputs were validated when the job was accepted; decoding again guards against a hand-edited row.
      const decoded = yield* Effect.orDie(Schema.decodeUnknown(Schema.Array(input))(inputs))
      const gate = options.gate
      let unfinished = decoded.length
      const overrides = {
        ...options.overrides,
        tenant: options.tenant,
        ...(options.admit === undefined ? {} : { budget: options.admit })
      }
      yield* processor
        .run(options.source(decoded) as Iterable<I>, overrides, {
          control: options.control,
          runId: jobId,
          onEvent: (event) => {
            options.onInFlight(event.counts.inFlight)
            if (event._tag === "ItemFinished") {
              unfinished--
              gate?.done(1)
              const item = decoded[event.result.index]
              return options.onFinished(
                event.result as ItemResult<unknown>,
                item === undefined ? undefined : effectOf(item, event.result, jobId)
              )
            }
            return Effect.void
          }
        })
        .pipe(Effect.ensuring(Effect.sync(() => gate?.done(unfinished))))
    })
})

export interface LiveRun {
  readonly jobId: string
  readonly control: RunControl.RunControl
  readonly done: Deferred.Deferred<RunOutcome>
}

/**
 * Waits for `self` at most `limit`. Safe in a finalizer of an interrupted fiber, where shutdown code
 * runs: there an `Effect.interruptible` region ends at once (the fiber's interruption is still
 * pending), so a plain `Effect.timeout(…).pipe(Effect.interruptible)` would not wait at all. The wait
 * runs in a fiber of its own, which nothing has interrupted — not a child fiber, since interrupting a
 * fiber signals its children at once.
 */
export const awaitWithin = <A, E, R>(self: Effect.Effect<A, E, R>, limit: Duration.DurationInput) =>
  self.pipe(Effect.timeout(limit), Effect.interruptible, Effect.forkDaemon, Effect.flatMap(Fiber.join))

/** `paused`: shutdown stopped the run before every item had a result; the job resumes on restart. */
export type RunOutcome = "finished" | "paused"

export class JobRunner extends Effect.Service<JobRunner>()("parallel-processor/JobRunner", {
  scoped: Effect.gen(function* () {
    const store = yield* JobStore
    const health = yield* StorageHealth
    const interactions = yield* InteractionsProcessor
    const postGeneration = yield* PostGenerationProcessor
    const intraday = yield* IntradayTriggersProcessor
    const grace = yield* Config.duration("SHUTDOWN_GRACE_PERIOD").pipe(Config.withDefault(Duration.seconds(10)))
    const cancelPoll = yield* Config.duration("JOB_CANCEL_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(500)))
    // Group commit: results that finish within this window share one transaction. A crash can lose
    // at most this window of finished results (those items run again).
    const commitInterval = yield* Config.duration("JOB_COMMIT_INTERVAL").pipe(Config.withDefault(Duration.millis(5)))
    // How long a batch of finished results is retried while the database does not answer or refuses
    // writes (a full disk, a read-only file, an I/O error). Past it the run stops and its unstored
    // items run again once storage works (at-least-once); it also bounds how long a shutdown or a
    // hand-over waits for a writer that cannot write.
    const writeRetry = Schedule.exponential(Duration.millis(100), 2).pipe(
      Schedule.union(Schedule.spaced(Duration.seconds(1))),
      Schedule.upTo(yield* Config.duration("JOB_STORE_RETRY_WINDOW").pipe(Config.withDefault(Duration.seconds(60))))
    )
    // A shared database means other instances run parts of the same jobs: limits are held together.
    const shared = (yield* Database.Location).dialect === "pg"
    const runner = shared ? yield* runnerId : "local"
    const gateSettings = yield* ClusterGate.settingsConfig
    const gates = new Map<string, { readonly gate: LocalGate; readonly scope: Scope.CloseableScope; refs: number }>()
    /** The job's gate on this runner, shared by its partitions here; closed with the last of them. */
    const openGate = (jobId: string, limit: number) =>
      Effect.gen(function* () {
        const existing = gates.get(jobId)
        if (existing !== undefined) {
          existing.refs++
          return existing.gate
        }
        const scope = yield* Scope.make()
        const gate = yield* Scope.extend(ClusterGate.make(store, `job:${jobId}`, runner, limit, gateSettings), scope)
        gates.set(jobId, { gate, scope, refs: 1 })
        return gate
      })
    const closeGate = (jobId: string) =>
      Effect.suspend(() => {
        const entry = gates.get(jobId)
        if (entry === undefined || --entry.refs > 0) return Effect.void
        gates.delete(jobId)
        return Scope.close(entry.scope, Exit.void)
      })

    const runners: Record<JobKind, KindRunner> = {
      interactions: kindRunner(interactions, kindSchemas.interactions.input, (post, result) =>
        result.status === "succeeded"
          ? { _tag: "Interactions", postId: post.postId, articleId: post.articleId, kolSerial: post.kolSerial, data: result.value }
          : undefined
      ),
      "post-generation": kindRunner(postGeneration, kindSchemas["post-generation"].input, (request, result, jobId) =>
        result.status === "succeeded"
          ? {
              _tag: "GeneratedPost",
              postId: request.id ?? `${jobId}-${result.index}`,
              kolSerial: request.kolSerial,
              stockCode: request.stockCode,
              content: result.value.content
            }
          : undefined
      ),
      "intraday-triggers": kindRunner(intraday, kindSchemas["intraday-triggers"].input, () => undefined)
    }

    const events = yield* JobEvents.make
    const live = new Map<string, LiveRun>()
    // Jobs cancelled here whose stored flag may not be written yet (a DELETE while writes fail): a run
    // that starts before the flag lands must still see it.
    const cancels = new Set<string>()
    const shuttingDown = yield* Deferred.make<void>()
    const scope = yield* Effect.scope
    const partLocks = yield* PartLocks.make

    const publish = events.publish

    /** Marks a job whose items all have results as ended, and tells its followers. */
    const finalize = (jobId: string, startedAt: number) =>
      Effect.gen(function* () {
        const job = yield* store.getJob(jobId)
        if (job === undefined || job.status === "completed" || job.status === "cancelled") return
        const status = job.cancelRequested || cancels.has(jobId) ? "cancelled" : "completed"
        const finishedAt = Date.now()
        yield* store.finish(jobId, status, finishedAt)
        cancels.delete(jobId)
        const counts = yield* store.counts(job)
        const finished = yield* store.getJob(jobId)
        if (finished !== undefined) yield* publish({ type: "completed", jobId, job: viewOf(finished, counts) })
        yield* Effect.logInfo(
          `job ${status}: ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.cancelled} cancelled, ${counts.skipped} skipped`
        ).pipe(Effect.annotateLogs({ job: jobId, kind: job.kind, durationMs: finishedAt - (job.startedAt ?? startedAt) }))
      })

    /**
     * Runs the job's items that belong to `slice` (index mod parts = part) and have no stored
     * result. With `finalizeAfter`, also ends the job (the single-runner case, one slice).
     */
    const execute = (
      jobId: string,
      slice: { readonly part: number; readonly parts: number } = { part: 0, parts: 1 },
      finalizeAfter = true
    ): Effect.Effect<RunOutcome, StoreError> =>
      Effect.gen(function* () {
        // Shutting down: start nothing (the cluster retries interrupted activities); the work resumes
        // after the restart or on the instance that takes the shard over.
        if (yield* Deferred.isDone(shuttingDown)) return "paused"
        const runKey = `${jobId}#${slice.part}`
        // The cluster may deliver a slice's activity again while it runs here (a retry after an
        // interruption): join the run in progress rather than start a second one beside it.
        const running = live.get(runKey)
        if (running !== undefined) return yield* Deferred.await(running.done)
        // The cluster may have moved this part here while the runner it left is still finishing the
        // calls it had in flight: wait until that runner has stored them and let go of the part.
        if (!(yield* partLocks.hold(jobId, slice.part, Deferred.isDone(shuttingDown)))) return "paused"
        if (yield* Deferred.isDone(shuttingDown)) return "paused"
        const job = yield* store.getJob(jobId)
        if (job === undefined || job.status === "completed" || job.status === "cancelled") return "finished"
        const inputs = yield* store.inputsOf(jobId)
        const stored = yield* store.items(jobId)
        const results = new Map<number, ItemResult<unknown>>(stored.map((s) => [s.index, s.result]))
        const mine = (index: number) => index % slice.parts === slice.part
        const pending = inputs.flatMap((input, index) => (results.has(index) || !mine(index) ? [] : [{ index, input }]))
        const startedAt = Date.now()
        yield* store.markRunning(jobId, startedAt)
        yield* Effect.logInfo(
          stored.length === 0 ? "job started" : `job resumed: ${stored.length} of ${inputs.length} items already done`
        ).pipe(Effect.annotateLogs({ job: jobId, kind: job.kind, part: slice.part }))

        const control = yield* RunControl.make
        const draining = { on: false }
        // Set when a drain stops the run: its unfinished items are left for the next run, not cancelled.
        const stopping = { on: false }
        const done = yield* Deferred.make<RunOutcome>()
        const started = live.get(runKey)
        if (started !== undefined) return yield* Deferred.await(started.done)
        live.set(runKey, { jobId, control, done })
        // However this run ends — paused, handed over, even interrupted halfway through its own cleanup
        // (a hand-over while the database is away) — it leaves the registry and releases whoever joined
        // it (as "paused" unless it finished); a stale entry would make the next delivery of this part
        // wait on a run that no longer exists.
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            if (live.get(runKey)?.done === done) live.delete(runKey)
            return Deferred.succeed(done, "paused")
          })
        )
        // Checked again once registered: a drain that began while this run was reading the database
        // has taken its list of runs already, and would not wait for this one.
        if (yield* Deferred.isDone(shuttingDown)) return "paused" as const

        const writes = yield* Mailbox.make<{ result: ItemResult<unknown>; effect: ItemEffect | undefined }>()
        let inFlight = 0
        let finishedThisRun = 0
        const counts = emptyTally(job.total)
        for (const result of results.values()) tally(counts, result.status)
        // This writer's failures count as a storage outage until one of its own writes works.
        const writerKey = `results:${runKey}`
        const writer = Effect.gen(function* () {
          for (;;) {
            const [chunk, end] = yield* writes.takeAll
            const batch = Array.from(chunk)
            // The database may be away for a moment (a restart, a failover) or refuse writes (a full
            // disk, a read-only file, an I/O error): keep the batch and try again rather than drop it —
            // these calls are done and would otherwise run again. StorageHealth logs the outage once
            // (not per write) and closes the run's valve meanwhile, so no new call starts.
            const save = store.saveItems(jobId, batch, Date.now()).pipe(
              Effect.tapError((error) => health.failed(writerKey, error))
            )
            const saved = yield* save.pipe(
              Effect.catchAll((error) =>
                Effect.logDebug(`could not store ${batch.length} result(s), retrying: ${error.message}`).pipe(
                  Effect.annotateLogs({ job: jobId, part: slice.part }),
                  Effect.zipRight(Effect.retry(save, writeRetry))
                )
              ),
              Effect.tapError((error) =>
                Effect.logWarning(
                  `could not store ${batch.length} result(s) within JOB_STORE_RETRY_WINDOW: stopping the run; its unstored items run again once storage works`,
                  error.message
                ).pipe(Effect.annotateLogs({ job: jobId, part: slice.part }), Effect.zipRight(health.release(writerKey)))
              )
            )
            yield* health.succeeded(writerKey)
            for (const b of saved) {
              results.set(b.index, b.result)
              finishedThisRun++
              tally(counts, b.result.status)
              const remaining = counts.total - counts.completed
              const eta = remaining > 0 ? { etaMs: Math.round(((Date.now() - startedAt) / finishedThisRun) * remaining) } : {}
              for (const event of itemEvents(jobId, b, counts, { inFlight, ...eta })) yield* publish(event)
            }
            if (end) return
            yield* Effect.sleep(commitInterval)
          }
        })
        // The run's fibers live in the runner's scope, not as children of this one: interrupting a fiber
        // interrupts its children at once, and a hand-over must let the calls in flight finish.
        // Whichever way the writer ends, a failure it leaves behind is the probe's to clear.
        const writerFiber = yield* Effect.forkIn(Effect.ensuring(writer, health.release(writerKey)), scope)

        // A cancel may come from another process sharing the database; poll the flag.
        const watcher = yield* store.cancelRequested(jobId).pipe(
          Effect.flatMap((requested) => (requested ? control.cancel : Effect.void)),
          Effect.catchAll(() => Effect.void),
          Effect.repeat(Schedule.spaced(cancelPoll)),
          Effect.interruptible,
          Effect.forkIn(scope)
        )
        const cancelledBefore = job.cancelRequested || cancels.has(jobId)
        if (cancelledBefore) yield* control.cancel

        const kind = runners[job.kind]
        const gate = shared
          ? yield* openGate(jobId, job.options.maxConcurrent ?? (yield* kind.maxConcurrent))
          : undefined
        if (gate !== undefined) yield* gate.want(pending.length)

        // Draining (shutdown or hand-over): no item is taken from the source and no call starts — not
        // even one already waiting for admission (the upstream budget's or the job's cluster-wide
        // permit) or a retry — while the calls in flight finish; once none is calling (or the grace
        // period is over) the rest is stopped, unrecorded, for the next run. Every call of the run is
        // admitted by an upstream budget as this run's tenant, so a call either was admitted before
        // the drain stopped the tenant or never starts.
        const tenant = Budget.tenant(runKey, job.options.priority ?? "normal")
        const beginDrain = Effect.suspend(() => {
          draining.on = true
          return Budget.stop(tenant)
        })
        const stopRun = Effect.gen(function* () {
          yield* beginDrain
          yield* awaitWithin(Budget.awaitIdle(tenant), grace)
          stopping.on = true
          yield* control.cancel
        })
        // A writer that gave up (storage failed for the whole retry window) ends the run at once: what
        // finishes now could not be stored either. Its items run again once storage works.
        const writerWatch = yield* Fiber.await(writerFiber).pipe(
          Effect.flatMap((exit) =>
            Exit.isFailure(exit)
              ? Effect.suspend(() => {
                  stopping.on = true
                  return Effect.zipRight(beginDrain, control.cancel)
                })
              : Effect.void
          ),
          Effect.interruptible,
          Effect.forkIn(scope)
        )
        // Embedded SQLite: while storage fails, no attempt starts (one waiting here holds nothing and
        // leaves on a drain like any other waiter): its result could not be stored, and what is kept in
        // memory meanwhile is bounded by the calls that were in flight. With a shared database the
        // cluster stops the run instead, since its shards go when its storage does.
        const valve = gate === undefined
          ? yield* Budget.make({ key: `storage:${runKey}`, ceiling: 10_000, passive: true })
          : undefined
        if (valve !== undefined) {
          yield* health.changes.pipe(
            Stream.runForEach((working) => valve.update({ share: working ? null : 0 })),
            Effect.interruptible,
            Effect.forkScoped
          )
        }

        const runFiber = yield* kind
          .run(
            pending.map((p) => p.input),
            jobId,
            {
              // A deadline counts from the job's first start (stored), not from this run's: a job
              // resumed after a restart keeps the deadline it began with, and one resumed after it
              // ends its unfinished items deadline_exceeded without calling anyone.
              overrides:
                job.options.deadlineSeconds === undefined
                  ? job.options
                  : { ...job.options, deadlineAt: (job.startedAt ?? startedAt) + job.options.deadlineSeconds * 1000 },
              control,
              // Shutdown stops handing out items; those already started finish within the grace period.
              source: (all) => ({
                *[Symbol.iterator]() {
                  for (const item of all) {
                    if (draining.on) return
                    yield item
                  }
                }
              }),
              onFinished: (result, effect) =>
                Effect.suspend(() => {
                  const original = pending[result.index]
                  if (original === undefined) return Effect.void
                  // A shutdown interrupts unfinished items: they are not cancelled, they run after restart.
                  if (stopping.on && result.status === "cancelled") return Effect.void
                  return writes.offer({ result: { ...result, index: original.index }, effect }).pipe(Effect.asVoid)
                }),
              onInFlight: (n) => {
                inFlight = n
              },
              admit: gate?.budget ?? valve,
              tenant,
              gate
            }
          )
          .pipe(
            // The activity runs uninterruptibly inside the cluster; the engine needs interruption for
            // its timeouts and for cancel, so its region is made interruptible again.
            Effect.interruptible,
            Effect.forkIn(scope)
          )
        const drainer = yield* Deferred.await(shuttingDown).pipe(
          Effect.zipRight(stopRun),
          Effect.interruptible,
          Effect.forkIn(scope)
        )
        const cleanup = Effect.uninterruptible(Effect.gen(function* () {
          yield* Fiber.interrupt(runFiber)
          yield* Fiber.interrupt(drainer)
          if (gate !== undefined) yield* closeGate(jobId)
          // What finished is still stored, even when this run was interrupted.
          yield* writes.end
          const stored = yield* Effect.exit(Fiber.join(writerFiber))
          yield* Fiber.interrupt(writerWatch)
          yield* Fiber.interrupt(watcher)
          live.delete(runKey)
          // A writer that gave up fails the run (after the rest is cleaned up): the activity waits for
          // storage to work and runs the unstored items again.
          yield* stored
        }))
        // Interruptible although the cluster runs activities uninterruptibly: when this runner loses
        // the shard (an instance joined, or this one stops), the run must stop here, or it would run on
        // two runners. It hands over like a shutdown: no new items, the calls in flight get the grace
        // period to finish and are stored, so the runner taking over does not call them again.
        const handOver = Effect.gen(function* () {
          yield* Effect.logInfo("handing over: letting the calls in flight finish").pipe(
            Effect.annotateLogs({ job: jobId, part: slice.part, calling: tenant.calling })
          )
          const began = Date.now()
          yield* stopRun
          yield* Fiber.await(runFiber)
          yield* cleanup
          yield* Effect.logInfo("handed over").pipe(
            Effect.annotateLogs({ job: jobId, part: slice.part, waitedMs: Date.now() - began })
          )
        })
        yield* Effect.interruptible(Fiber.join(runFiber)).pipe(
          Effect.onInterrupt(() => Effect.ignore(handOver))
        )
        yield* cleanup

        const allMineDone = () => inputs.every((_, index) => !mine(index) || results.has(index))
        if (!allMineDone()) {
          // Another process may have stored some of these items (a re-run after a failover).
          for (const item of yield* store.items(jobId)) results.set(item.index, item.result)
        }
        if (!allMineDone()) {
          // Only a shutdown can leave items without a result; the workflow resumes them on restart.
          yield* Effect.logInfo("job paused for shutdown").pipe(Effect.annotateLogs({ job: jobId, part: slice.part }))
          return "paused" as const
        }
        if (finalizeAfter) yield* finalize(jobId, startedAt)
        else yield* Effect.logInfo("part finished").pipe(Effect.annotateLogs({ job: jobId, part: slice.part }))
        yield* Deferred.succeed(done, "finished")
        return "finished" as const
      }).pipe(Effect.scoped, Effect.withSpan("JobRunner.execute", { attributes: { jobId } }))

    /**
     * Ends a job no run will end (its workflow ended without ending it, see `Jobs.cancel`): the items
     * without a result are stored as cancelled, then the job as cancelled — its cancel was asked for.
     */
    const endStranded = (jobId: string): Effect.Effect<void, StoreError> =>
      Effect.gen(function* () {
        const job = yield* store.getJob(jobId)
        if (job === undefined || job.status === "completed" || job.status === "cancelled") return
        cancels.add(jobId)
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

    /** Cancels a job running in this process now; other processes see the stored flag. */
    const cancelLocal = (jobId: string) =>
      Effect.suspend(() => {
        cancels.add(jobId)
        return Effect.forEach(
          Array.from(live.values()).filter((run) => run.jobId === jobId),
          (run) => run.control.cancel,
          { discard: true }
        )
      })

    // Shutdown: stop handing out items, give running attempts the grace period, then interrupt them.
    const drain = Effect.gen(function* () {
      yield* Deferred.succeed(shuttingDown, undefined)
      const runs = Array.from(live.values())
      if (runs.length === 0) return
      yield* Effect.logInfo(
        `shutdown: draining ${runs.length} running job(s), grace ${Duration.format(grace)}: ${Array.from(live.keys()).join(", ")}`
      )
      yield* awaitWithin(
        Effect.forEach(runs, (run) => Deferred.await(run.done), { discard: true, concurrency: "unbounded" }),
        Duration.sum(grace, Duration.seconds(2))
      ).pipe(Effect.ignore)
    })
    yield* Effect.addFinalizer(() => drain)

    return {
      execute,
      /** Shutdown: stop handing out items, let running attempts finish (grace period), store them. */
      drain,
      cancelLocal,
      endStranded,
      events,
      shuttingDown,
      finalize,
      isLive: (jobId: string) => Array.from(live.values()).some((run) => run.jobId === jobId)
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

