/**
 * Jobs: every batch the service accepts is a stored job executed as an `@effect/workflow` workflow
 * (`JobWorkflows.ts`) on an `@effect/cluster` runner, so a job survives the process dying and resumes
 * on the next start.
 * This module is what the HTTP handlers talk to: submit (with idempotency keys), read, list, cancel,
 * follow progress (stored events replayed, then live ones), and wait for the end.
 */
import { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import { Data, Deferred, Duration, Effect, Schedule, Stream } from "effect"
import { createHash } from "node:crypto"
import { JobRunner } from "./JobRunner.js"
import { JobWorkflow } from "./JobWorkflows.js"
import { JobStore, viewOf, type JobRecord, type StoreError } from "./JobStore.js"
import { ANONYMOUS, StorageHealth, type StorageFailing } from "./StorageHealth.js"
import { Topology } from "./Topology.js"
import { emptyTally, isTerminal, itemEvents, tally, type Counts, type JobDetail, type JobEvent, type JobKind, type JobOptions, type JobStatus, type JobView } from "./Model.js"

export class JobNotFound extends Data.TaggedError("JobNotFound")<{ readonly id: string }> {}
export class IdempotencyConflict extends Data.TaggedError("IdempotencyConflict")<{ readonly key: string }> {}

export interface ListFilter {
  readonly kind?: JobKind | undefined
  readonly status?: JobStatus | undefined
  readonly limit: number
  readonly offset: number
  /** Keyset paging: the jobs after this one (newest first), as the previous page's last job. */
  readonly after?: { readonly createdAt: number; readonly id: string } | undefined
}

const requestHash = (kind: JobKind, inputs: ReadonlyArray<unknown>, options: JobOptions) =>
  createHash("sha256").update(JSON.stringify({ kind, inputs, options })).digest("hex")

export class Jobs extends Effect.Service<Jobs>()("parallel-processor/Jobs", {
  scoped: Effect.gen(function* () {
    const store = yield* JobStore
    const runner = yield* JobRunner
    const engine = yield* WorkflowEngine
    const health = yield* StorageHealth
    const scope = yield* Effect.scope
    const topology = yield* Topology

    const start = (jobId: string) =>
      JobWorkflow.execute({ jobId }, { discard: true }).pipe(
        Effect.provideService(WorkflowEngine, engine),
        Effect.asVoid
      )

    // Jobs accepted just before a crash may not have reached the workflow engine; starting them again
    // is harmless (the execution id is the job id) and the engine resumes the rest on its own. The same
    // after a storage outage: a job accepted as it began may have been stored without its workflow.
    const resumeUnfinished = Effect.gen(function* () {
      const unfinished = yield* store.unfinished
      if (unfinished.length > 0) yield* Effect.logInfo(`resuming ${unfinished.length} unfinished job(s)`)
      yield* Effect.forEach(
        unfinished,
        (id) => start(id).pipe(Effect.catchAllCause((cause) => Effect.logError("could not resume job", cause).pipe(Effect.annotateLogs("jobId", id)))),
        { discard: true }
      )
    }).pipe(Effect.catchAll((error) => Effect.logError("could not list unfinished jobs", error.message)))
    yield* Effect.forkScoped(resumeUnfinished)
    yield* health.changes.pipe(
      Stream.changes,
      Stream.drop(1),
      Stream.filter((working) => working),
      Stream.runForEach(() => Effect.zipRight(topology.afterStorageOutage, resumeUnfinished)),
      Effect.interruptible,
      Effect.forkScoped
    )

    const view = (job: JobRecord): Effect.Effect<JobView, StoreError> =>
      Effect.map(store.counts(job), (counts) => viewOf(job, counts))

    const find = (id: string) =>
      Effect.flatMap(store.getJob(id), (job) => (job === undefined ? Effect.fail(new JobNotFound({ id })) : Effect.succeed(job)))

    const submit = (
      kind: JobKind,
      inputs: ReadonlyArray<unknown>,
      options: JobOptions,
      idempotencyKey?: string
    ): Effect.Effect<{ readonly job: JobView; readonly created: boolean }, IdempotencyConflict | StoreError | StorageFailing> =>
      Effect.gen(function* () {
        // While writes fail, a new job could not store its results (and might not even be stored
        // itself, or only partly): refused with the reason, answered 503.
        yield* health.refuseWhileFailing
        const hash = requestHash(kind, inputs, options)
        const { job, created } = yield* store.createJob({
          id: globalThis.crypto.randomUUID(),
          kind,
          inputs,
          options,
          idempotencyKey,
          requestHash: hash,
          createdAt: Date.now()
        }).pipe(
          Effect.tapError((error) => Effect.zipRight(health.failed(ANONYMOUS, error), health.refuseWhileFailing))
        )
        if (!created && job.requestHash !== hash) {
          return yield* new IdempotencyConflict({ key: idempotencyKey ?? "" })
        }
        if (created) {
          // The engine dies when it cannot store the workflow's start (its own tables, same database):
          // the job is stored, so it is accepted, and it starts once storage works (resumeUnfinished).
          yield* start(job.id).pipe(
            Effect.catchAllDefect((defect) =>
              Effect.zipRight(
                health.failed(ANONYMOUS, defect),
                Effect.logWarning("job stored but its workflow could not start yet: it starts when storage works").pipe(
                  Effect.annotateLogs({ job: job.id })
                )
              )
            )
          )
          yield* Effect.logInfo(`job accepted: ${inputs.length} item(s)`).pipe(Effect.annotateLogs({ job: job.id, kind }))
        }
        return { job: yield* view(job), created }
      })

    /** The job with all its results: the sync batch answer. */
    const get = (id: string): Effect.Effect<JobDetail, JobNotFound | StoreError> =>
      Effect.gen(function* () {
        const job = yield* find(id)
        const items = yield* store.items(id)
        const results = items.map((i) => i.result).sort((a, b) => a.index - b.index)
        return { ...(yield* view(job)), results }
      })

    /** The job with its first `maxResults` results by index, and whether more are stored. */
    const head = (id: string, maxResults: number): Effect.Effect<{ readonly detail: JobDetail; readonly more: boolean }, JobNotFound | StoreError> =>
      Effect.gen(function* () {
        const job = yield* find(id)
        // One row more than asked tells whether there are more, without counting them.
        const items = yield* store.itemsByIndex(id, -1, maxResults + 1)
        const results = items.slice(0, maxResults).map((i) => i.result)
        return { detail: { ...(yield* view(job)), results }, more: items.length > maxResults }
      })

    /** Finished results in input order after index `after`, at most `limit`; `more` when others follow. */
    const results = (id: string, after: number, limit: number) =>
      Effect.gen(function* () {
        const job = yield* view(yield* find(id))
        const items = yield* store.itemsByIndex(id, after, limit + 1)
        return { job, results: items.slice(0, limit).map((i) => i.result), more: items.length > limit }
      })

    /** A page of jobs, newest first; `last` is the sort key of its last job when more may follow. */
    const list = (filter: ListFilter) =>
      Effect.gen(function* () {
        const page = yield* store.listJobs({ ...filter, limit: filter.limit + 1 })
        const shown = page.jobs.slice(0, filter.limit)
        const jobs = yield* Effect.forEach(shown, view)
        const last = shown[shown.length - 1]
        return {
          jobs,
          total: page.total,
          last: page.jobs.length > filter.limit && last !== undefined ? { createdAt: last.createdAt, id: last.id } : undefined
        }
      })

    /**
     * The sole runner (embedded SQLite): a job whose workflow has ended although the job has not — its
     * failure was recorded as the workflow's result by a version that let storage failures through — is
     * ended here, as nothing else would ever end it.
     */
    const endIfStranded = (id: string) =>
      !topology.soleRunner || runner.isLive(id)
        ? Effect.void
        : Effect.gen(function* () {
            const executionId = yield* JobWorkflow.executionId({ jobId: id })
            const result = yield* JobWorkflow.poll(executionId).pipe(Effect.provideService(WorkflowEngine, engine))
            if (result?._tag === "Complete") yield* runner.endStranded(id)
          })

    /** The stored half of a cancel: the flag (for other instances and restarts), then a stranded job's end. */
    const storeCancel = (id: string) => Effect.zipRight(store.requestCancel(id), endIfStranded(id))

    const cancel = (id: string): Effect.Effect<JobView, JobNotFound | StoreError> =>
      Effect.gen(function* () {
        const job = yield* find(id)
        if (isTerminal(job.status)) return yield* view(job)
        // In memory first: the job's calls here stop now, and a run that starts here later (after a
        // storage outage) sees the cancel whether or not its flag could be stored yet.
        yield* runner.cancelLocal(id)
        // While writes fail the flag is retried until it is stored; the job still ends: its run stopped,
        // and its cancelled items are stored with the rest once storage works.
        yield* storeCancel(id).pipe(
          Effect.catchTag("StoreError", (error) =>
            health.failed(ANONYMOUS, error).pipe(
              Effect.zipRight(
                storeCancel(id).pipe(
                  Effect.retry(Schedule.exponential(Duration.millis(200)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(2))))),
                  Effect.forkIn(scope)
                )
              )
            )
          )
        )
        yield* Effect.logInfo("job cancel requested").pipe(Effect.annotateLogs({ job: id }))
        return yield* view({ ...job, cancelRequested: true })
      })

    /** Stored events first (as a client that watched from the start would have seen them), then live ones. */
    const events = (id: string, afterSeq?: number): Stream.Stream<JobEvent, JobNotFound | StoreError> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          // Subscribe before reading, so nothing that finishes in between is missed.
          const subscription = yield* runner.events.subscribe(id)
          const job = yield* find(id)
          const stored = yield* store.items(id)
          // A client reconnecting with the last `seq` it saw (SSE Last-Event-ID) gets only what is newer.
          const replay: Array<JobEvent> = afterSeq === undefined
            ? [{ type: "started", jobId: id, kind: job.kind, total: job.total, at: new Date(job.startedAt ?? job.createdAt).toISOString() }]
            : []
          const counts = emptyTally(job.total)
          for (const item of stored) {
            tally(counts, item.result.status)
            if (afterSeq === undefined || item.seq > afterSeq) replay.push(...itemEvents(id, item, counts))
          }
          if (isTerminal(job.status)) {
            replay.push({ type: "completed", jobId: id, job: yield* view(job) })
            return Stream.fromIterable(replay)
          }
          const lastSeq = stored.reduce((max, s) => Math.max(max, s.seq), -1)
          let dropProgress = false
          const liveEvents = Stream.fromQueue(subscription).pipe(
            Stream.filter((event) => {
              if (event.type === "item") {
                dropProgress = event.seq <= lastSeq
                return !dropProgress
              }
              if (event.type === "progress") return !dropProgress
              return event.type === "completed"
            }),
            Stream.takeUntil((event) => event.type === "completed")
          )
          return Stream.concat(
            Stream.fromIterable(replay),
            topology.follow(id, { local: liveEvents, stored: (wakes) => fromDatabase(id, lastSeq, counts, wakes) })
          )
        })
      )

    /**
     * Live events of a job that may run in another process: new item rows and the job's status, read
     * at each wake-up (instances share nothing but the database).
     */
    const fromDatabase = (
      id: string,
      fromSeq: number,
      start: Counts,
      wakes: Stream.Stream<void>
    ): Stream.Stream<JobEvent, JobNotFound | StoreError> => {
      const counts = { ...start }
      let lastSeq = fromSeq
      const step = Effect.gen(function* () {
        // Read the status first: rows stored before a terminal status are then all visible below.
        const job = yield* find(id)
        const fresh = yield* store.items(id, lastSeq)
        const events: Array<JobEvent> = []
        for (const item of fresh) {
          lastSeq = Math.max(lastSeq, item.seq)
          tally(counts, item.result.status)
          events.push(...itemEvents(id, item, counts))
        }
        const ended = isTerminal(job.status)
        if (ended) events.push({ type: "completed", jobId: id, job: yield* view(job) })
        return { events, ended }
      })
      return wakes.pipe(
        Stream.mapEffect(() => step),
        Stream.takeUntil((read) => read.ended),
        Stream.flatMap((read) => Stream.fromIterable(read.events))
      )
    }

    /** Waits until the job ends; `false` when this process began shutting down first. */
    const awaitEnd = (id: string): Effect.Effect<boolean, JobNotFound | StoreError> =>
      Effect.scoped(
        Effect.gen(function* () {
          // Registered before reading, so an end in between is not missed. Only the end is waited
          // for: a subscription would take the job's two events per item only to drop them.
          const local = yield* runner.events.awaitCompleted(id)
          const job = yield* find(id)
          if (isTerminal(job.status)) return true
          // In a cluster the job may end in another instance, which only the database tells.
          const stored = (wakes: Stream.Stream<void>) =>
            wakes.pipe(
              Stream.mapEffect(() => find(id)),
              Stream.filter((now) => isTerminal(now.status)),
              Stream.runHead,
              Effect.asVoid
            )
          const ended = Effect.as(topology.awaitEnd(id, { local, stored }), true)
          return yield* Effect.raceFirst(ended, Effect.as(Deferred.await(runner.shuttingDown), false))
        })
      )

    return { submit, get, head, results, list, cancel, events, awaitEnd, view, find } as const
  })
}) {}
