/**
 * A run's result writer: stores finished item results by group commit (the results that finish
 * within `commitInterval` of each other share one transaction) and keeps a batch it could not store,
 * retrying it, rather than drop calls that are already done. A crash loses at most one commit
 * interval of finished results (those items run again).
 */
import { Cause, Deferred, Duration, Effect, Exit, Fiber, FiberId, Mailbox, Option, Schedule, type Scope } from "effect"
import { StoreError } from "../JobStore.js"

/** Where the writer reports its writes' outcomes (`StorageHealth`, under the writer's own key). */
export interface WriteReports {
  readonly failed: (error: StoreError) => Effect.Effect<void>
  readonly succeeded: Effect.Effect<void>
  /** The writer stops retrying: its failure is left for someone else (the storage probe) to clear. */
  readonly release: Effect.Effect<void>
}

export interface Options<A, B> {
  /** Stores one batch; answers what was stored (`B`), in order. */
  readonly save: (batch: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, StoreError>
  /** After each stored batch (publish its events). */
  readonly onStored: (stored: ReadonlyArray<B>) => Effect.Effect<void>
  readonly commitInterval: Duration.DurationInput
  /** How long, and how often, a batch is retried while storage fails. */
  readonly retry: Schedule.Schedule<unknown, StoreError>
  readonly reports: WriteReports
  /** Log annotations (job, part). */
  readonly annotations: Readonly<Record<string, unknown>>
}

export interface ResultWriter<A> {
  /** Queues a finished result; it is stored with those that finish within the commit interval. */
  readonly offer: (result: A) => Effect.Effect<void>
  /**
   * No more results: stores what is queued, then ends. Fails when a batch could not be stored within
   * the retry window (the writer gave up; what it still held is lost and runs again later).
   */
  readonly end: Effect.Effect<void, StoreError>
  /** Completes when the writer gives up (see `end`); never when it ends by storing everything. */
  readonly gaveUp: Effect.Effect<void>
  /**
   * Completes once every result offered before it is stored, and the writer goes on (a part of a
   * job letting go of a writer the job's other parts still use). Fails like `end` once the writer
   * gave up.
   */
  readonly flush: Effect.Effect<void, StoreError>
}

/** How long a batch is retried while storage fails: `JOB_STORE_RETRY_WINDOW`, backing off to 1 s. */
export const retryWithin = (window: Duration.DurationInput): Schedule.Schedule<unknown, StoreError> =>
  Schedule.exponential(Duration.millis(100), 2).pipe(Schedule.union(Schedule.spaced(Duration.seconds(1))), Schedule.upTo(window))

/**
 * Starts the writer in the scope given. It runs in a fiber of its own so that a run interrupted
 * while handing over still stores what finished: the caller passes a scope that outlives the run.
 */
export const make = <A, B>(options: Options<A, B>): Effect.Effect<ResultWriter<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Mailbox.make<A>()
    const { reports } = options
    // For `flush`: results offered and stored so far, and who waits for a count to be stored.
    let offered = 0
    let stored = 0
    let failure: StoreError | undefined
    const waiters: Array<{ readonly upTo: number; readonly done: Deferred.Deferred<void, StoreError> }> = []
    /** Wakes who waits for what is stored now; `ended`: the writer stopped, everyone is answered. */
    const settle = (ended: Exit.Exit<void, StoreError> | undefined) =>
      Effect.suspend(() => {
        const ready = ended === undefined ? waiters.filter((w) => w.upTo <= stored) : waiters.slice()
        if (ended?._tag === "Failure") {
          // The loop's failure is a StoreError, or an interruption (scope closed): either way nothing more is stored.
          failure = Cause.failureOption(ended.cause).pipe(
            Option.getOrElse(() => new StoreError({ message: "the result writer stopped before storing every result", cause: undefined }))
          )
        }
        for (const w of ready) waiters.splice(waiters.indexOf(w), 1)
        return Effect.forEach(ready, (w) => Deferred.done(w.done, failure === undefined ? Exit.void : Exit.fail(failure)), { discard: true })
      })
    const loop = Effect.gen(function* () {
      for (;;) {
        const [chunk, end] = yield* queue.takeAll
        const batch = Array.from(chunk)
        if (batch.length > 0) {
          // The database may be away for a moment (a restart, a failover) or refuse writes (a full
          // disk, a read-only file, an I/O error): keep the batch and try again rather than drop it.
          // StorageHealth logs the outage once (not per write) and closes the run's valve meanwhile.
          const save = options.save(batch).pipe(Effect.tapError(reports.failed))
          const saved = yield* save.pipe(
            Effect.catchAll((error) =>
              Effect.logDebug(`could not store ${batch.length} result(s), retrying: ${error.message}`).pipe(
                Effect.annotateLogs(options.annotations),
                Effect.zipRight(Effect.retry(save, options.retry))
              )
            ),
            Effect.tapError((error) =>
              Effect.logWarning(
                `could not store ${batch.length} result(s) within JOB_STORE_RETRY_WINDOW: stopping the run; its unstored items run again once storage works`,
                error.message
              ).pipe(Effect.annotateLogs(options.annotations), Effect.zipRight(reports.release))
            )
          )
          yield* reports.succeeded
          yield* options.onStored(saved)
          stored += batch.length
          if (waiters.length > 0) yield* settle(undefined)
        }
        if (end) return
        yield* Effect.sleep(options.commitInterval)
      }
    })
    // Whichever way the writer ends, a failure it leaves behind is the probe's to clear.
    const fiber = yield* Effect.forkScoped(Effect.ensuring(loop, reports.release).pipe(Effect.onExit(settle)))
    return {
      offer: (result) =>
        Effect.suspend(() => {
          offered++
          return Effect.map(queue.offer(result), (taken) => {
            if (!taken) offered--
          })
        }),
      flush: Effect.suspend(() => {
        if (failure !== undefined) return Effect.fail(failure)
        if (stored >= offered) return Effect.void
        const done = Deferred.unsafeMake<void, StoreError>(FiberId.none)
        waiters.push({ upTo: offered, done })
        return Deferred.await(done)
      }),
      end: Effect.zipRight(queue.end, Fiber.join(fiber)),
      gaveUp: Effect.flatMap(Fiber.await(fiber), (exit) => (exit._tag === "Failure" ? Effect.void : Effect.never))
    }
  })
