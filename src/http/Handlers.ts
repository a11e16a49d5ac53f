/**
 * The handlers of the HTTP contract: batch routes become durable jobs (answered when done, as 202 +
 * Location with `Prefer: respond-async`, or as an NDJSON/SSE event stream), plus jobs, tracked
 * posts, processors, breakers and operations. Domain errors are mapped to the contract's errors here.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Deferred, Duration, Effect, Layer, Stream } from "effect"
import * as Budget from "../engine/Budget.js"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { BudgetSettingsSync } from "../jobs/ClusterBudgets.js"
import { JobRunner } from "../jobs/JobRunner.js"
import { JobStore, type StoreError } from "../jobs/JobStore.js"
import { Jobs, type IdempotencyConflict, type JobNotFound } from "../jobs/Jobs.js"
import type { JobEvent, JobKind, JobOptions } from "../jobs/Model.js"
import { StorageHealth, type StorageFailing } from "../jobs/StorageHealth.js"
import { IntradayTriggersProcessor } from "../processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../processors/Interactions.js"
import { PostGenerationProcessor } from "../processors/PostGeneration.js"
import type * as Processor from "../processors/Processor.js"
import { isUpstreamKey, UpstreamBudgets, upstreamKeys } from "../upstream/Budgets.js"
import {
  Api,
  BadRequest,
  Conflict,
  encodeJobCursor,
  MAX_RESULTS_PAGE,
  NotFound,
  Unavailable,
  type BatchHeaders,
  type ProcessorName
} from "./Api.js"
import { Admission } from "./Admission.js"
import { PrometheusText } from "./Metrics.js"

type Headers = typeof BatchHeaders.Type

/** `GET /api/jobs/{id}/results` without `limit`. */
const DEFAULT_RESULTS_PAGE = 100

const storeUnavailable = (error: StoreError) =>
  Effect.logError(error.message, error.cause).pipe(
    Effect.zipRight(Effect.fail(new Unavailable({ message: "the job database is unavailable; try again" })))
  )

/** Writes fail (a full disk, …): the outage is logged once by StorageHealth, not per refused request. */
const storageFailing = (error: StorageFailing) => Effect.fail(new Unavailable({ message: error.message }))

const notFound = (error: JobNotFound) => Effect.fail(new NotFound({ message: `no job with id "${error.id}"` }))

const conflict = (error: IdempotencyConflict) =>
  Effect.fail(
    new Conflict({ message: `Idempotency-Key "${error.key}" was already used for a different request` })
  )

const respondAsync = (prefer: string | undefined) =>
  prefer !== undefined && prefer.split(/[,;]/).some((p) => p.trim().toLowerCase() === "respond-async")

const wantsSse = (accept: string | undefined) => accept !== undefined && accept.includes("text/event-stream")

const limitsOf = (body: {
  readonly maxConcurrent?: number | undefined
  readonly timeoutSeconds?: number | undefined
  readonly priority?: JobOptions["priority"] | undefined
  readonly deadlineSeconds?: number | undefined
}): JobOptions => ({
  ...(body.maxConcurrent === undefined ? {} : { maxConcurrent: body.maxConcurrent }),
  ...(body.timeoutSeconds === undefined ? {} : { timeoutSeconds: body.timeoutSeconds }),
  ...(body.priority === undefined ? {} : { priority: body.priority }),
  ...(body.deadlineSeconds === undefined ? {} : { deadlineSeconds: body.deadlineSeconds })
})

/** NDJSON lines or SSE frames of job events; the stream ends at `completed` or when the server stops. */
export const eventResponse = (events: Stream.Stream<JobEvent, unknown>, sse: boolean, stop: Deferred.Deferred<void>) =>
  HttpServerResponse.stream(
    events.pipe(
      Stream.interruptWhenDeferred(stop),
      Stream.map((event) =>
        sse
          ? `event: ${event.type}\n${event.type === "item" ? `id: ${event.seq}\n` : ""}data: ${JSON.stringify(event)}\n\n`
          : `${JSON.stringify(event)}\n`
      ),
      Stream.catchAll(() => Stream.empty),
      Stream.encodeText
    ),
    {
      contentType: sse ? "text/event-stream" : "application/x-ndjson",
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
    }
  )

const BatchesLive = HttpApiBuilder.group(Api, "batches", (handlers) =>
  Effect.gen(function* () {
    const jobs = yield* Jobs
    const store = yield* JobStore
    const runner = yield* JobRunner
    const admission = yield* Admission

    const accepted = (job: { readonly id: string }) => `/api/jobs/${job.id}`

    /** Accept the batch as a job, then answer as the caller asked. */
    const submit = (kind: JobKind, inputs: ReadonlyArray<unknown>, options: JobOptions, headers: Headers, stream: boolean) =>
      Effect.gen(function* () {
        const { job } = yield* admission.admit(inputs.length, jobs.submit(kind, inputs, options, headers["idempotency-key"]))
        const location = accepted(job)
        const acceptedResponse = HttpServerResponse.unsafeJson({ ...job, location }, { status: 202, headers: { location } })
        if (respondAsync(headers.prefer)) return acceptedResponse
        if (stream) return eventResponse(jobs.events(job.id), wantsSse(headers.accept), runner.shuttingDown)
        const ended = yield* jobs.awaitEnd(job.id)
        // Shutting down before the job ended: it resumes after the restart; point the caller at it.
        if (!ended) return acceptedResponse
        const detail = yield* jobs.get(job.id)
        return HttpServerResponse.unsafeJson(detail, { headers: { "content-location": location } })
      }).pipe(
        Effect.catchTags({
          StoreError: storeUnavailable,
          StorageFailing: storageFailing,
          IdempotencyConflict: conflict,
          JobNotFound: notFound
        })
      )

    return handlers
      .handle("fetchAllInteractions", ({ payload, headers }) =>
        Effect.gen(function* () {
          const posts = payload.posts ?? (yield* Effect.catchTag(store.trackedPosts, "StoreError", storeUnavailable))
          return yield* submit("interactions", posts, limitsOf(payload), headers, false)
        })
      )
      .handle("batchGenerateStream", ({ payload, headers }) =>
        submit("post-generation", payload.requests, limitsOf(payload), headers, true)
      )
      .handle("executeMultiple", ({ payload, urlParams, headers }) =>
        submit("intraday-triggers", payload, limitsOf(urlParams), headers, false)
      )
  })
)

const JobsLive = HttpApiBuilder.group(Api, "jobs", (handlers) =>
  Effect.gen(function* () {
    const jobs = yield* Jobs
    const runner = yield* JobRunner
    return handlers
      .handle("list", ({ urlParams }) =>
        Effect.gen(function* () {
          if (urlParams.cursor !== undefined && urlParams.offset !== undefined) {
            return yield* new BadRequest({ message: "offset: cannot be combined with cursor; page with cursor alone" })
          }
          const limit = urlParams.limit ?? 50
          const page = yield* jobs.list({
            kind: urlParams.kind,
            status: urlParams.status,
            limit,
            offset: urlParams.offset ?? 0,
            after: urlParams.cursor
          })
          return {
            jobs: page.jobs,
            total: page.total,
            limit,
            ...(urlParams.cursor === undefined ? { offset: urlParams.offset ?? 0 } : {}),
            ...(page.last === undefined ? {} : { next: encodeJobCursor(page.last) })
          }
        }).pipe(Effect.catchTag("StoreError", storeUnavailable))
      )
      .handle("get", ({ path, urlParams }) =>
        jobs.head(path.id, urlParams.results ?? MAX_RESULTS_PAGE).pipe(
          Effect.map(({ detail, more }) => {
            if (!more) return detail
            const last = detail.results[detail.results.length - 1]
            const rest = `/api/jobs/${encodeURIComponent(path.id)}/results`
            // With `?results=0` nothing was shown: the rest starts at the beginning.
            return { ...detail, moreResults: last === undefined ? rest : `${rest}?after=${last.index}` }
          }),
          Effect.catchTags({ StoreError: storeUnavailable, JobNotFound: notFound })
        )
      )
      .handle("results", ({ path, urlParams }) =>
        jobs.results(path.id, urlParams.after ?? -1, urlParams.limit ?? DEFAULT_RESULTS_PAGE).pipe(
          Effect.map(({ job, results, more }) => {
            const last = results[results.length - 1]
            return {
              jobId: job.id,
              status: job.status,
              total: job.total,
              completed: job.completed,
              results,
              ...(more && last !== undefined ? { next: last.index } : {})
            }
          }),
          Effect.catchTags({ StoreError: storeUnavailable, JobNotFound: notFound })
        )
      )
      .handle("events", ({ path, headers }) =>
        // Check the job exists first, so an unknown id is a 404 rather than an empty stream.
        jobs.find(path.id).pipe(
          Effect.map(() =>
            eventResponse(
              jobs.events(path.id, headers["last-event-id"]),
              !(headers.accept ?? "").includes("application/x-ndjson"),
              runner.shuttingDown
            )
          ),
          Effect.catchTags({ StoreError: storeUnavailable, JobNotFound: notFound })
        )
      )
      .handle("cancel", ({ path }) =>
        jobs.cancel(path.id).pipe(Effect.catchTags({ StoreError: storeUnavailable, JobNotFound: notFound }))
      )
  })
)

const PostsLive = HttpApiBuilder.group(Api, "posts", (handlers) =>
  Effect.gen(function* () {
    const store = yield* JobStore
    return handlers
      .handle("import", ({ payload }) =>
        store.importPosts(payload.posts, Date.now()).pipe(
          Effect.as({ imported: payload.posts.length }),
          Effect.catchTag("StoreError", storeUnavailable)
        )
      )
      .handle("get", ({ path }) =>
        store.getPost(path.id).pipe(
          Effect.catchTag("StoreError", storeUnavailable),
          Effect.flatMap((post) =>
            post === undefined
              ? Effect.fail(new NotFound({ message: `no tracked post with id "${path.id}"` }))
              : Effect.succeed({
                  postId: post.postId,
                  kolSerial: post.kolSerial,
                  source: post.source,
                  createdAt: post.createdAt,
                  updatedAt: post.updatedAt,
                  history: post.history,
                  ...(post.articleId === undefined ? {} : { articleId: post.articleId }),
                  ...(post.stockCode === undefined ? {} : { stockCode: post.stockCode }),
                  ...(post.content === undefined ? {} : { content: post.content }),
                  ...(post.jobId === undefined ? {} : { jobId: post.jobId }),
                  ...(post.interactions === undefined ? {} : { interactions: post.interactions })
                })
          )
        )
      )
  })
)

const ProcessorsLive = HttpApiBuilder.group(Api, "processors", (handlers) =>
  Effect.gen(function* () {
    const byName: Record<ProcessorName, Pick<Processor.Processor<unknown, unknown>, "limits" | "maxConcurrent" | "attemptTimeout">> = {
      interactions: yield* InteractionsProcessor,
      post_generation: yield* PostGenerationProcessor,
      intraday_triggers: yield* IntradayTriggersProcessor
    }
    const registry = yield* CircuitBreakerRegistry
    const budgets = yield* UpstreamBudgets
    const budgetSync = yield* BudgetSettingsSync
    const upstreamView = (snap: Budget.Snapshot) => ({
      key: snap.key,
      ceiling: snap.ceiling,
      ...(snap.share === undefined ? {} : { share: snap.share }),
      limit: snap.limit,
      inFlight: snap.inFlight,
      waitingItems: snap.waiting,
      waitingJobs: snap.waitingTenants,
      algorithm: snap.algorithm,
      adaptive: snap.adaptive,
      throttled: snap.throttled,
      cooldowns: snap.cooldowns,
      ...(snap.cooldownUntil === undefined ? {} : { cooldownUntil: new Date(snap.cooldownUntil).toISOString() }),
      ...(snap.rate === undefined ? {} : { rate: Budget.formatRate(snap.rate) })
    })
    const describe = (name: ProcessorName) =>
      Effect.map(byName[name].limits, (limits) => ({ name, ...limits }))
    const names = Object.keys(byName) as Array<ProcessorName>
    return handlers
      .handle("list", () => Effect.forEach(names, describe))
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          const name = names.find((n) => n === path.name)
          if (name === undefined) {
            return yield* new NotFound({ message: `no processor "${path.name}"; one of ${names.join(", ")}` })
          }
          const processor = byName[name]
          if (payload.maxConcurrent !== undefined) yield* processor.maxConcurrent.set(payload.maxConcurrent)
          if (payload.timeoutSeconds !== undefined) yield* processor.attemptTimeout.set(Duration.seconds(payload.timeoutSeconds))
          yield* Effect.logInfo(`processor ${name} limits changed`).pipe(Effect.annotateLogs({ ...payload }))
          return yield* describe(name)
        })
      )
      .handle("upstreams", () => Effect.forEach(upstreamKeys, (key) => Effect.map(budgets[key].snapshot, upstreamView)))
      .handle("updateUpstream", ({ path, payload }) =>
        Effect.gen(function* () {
          const key = path.key
          if (!isUpstreamKey(key)) {
            return yield* new NotFound({ message: `no upstream "${key}"; one of ${upstreamKeys.join(", ")}` })
          }
          const budget = budgets[key]
          yield* budget.update({
            ...(payload.ceiling === undefined ? {} : { ceiling: payload.ceiling }),
            ...(payload.adaptive === undefined ? {} : { adaptive: payload.adaptive }),
            ...(payload.rate === undefined ? {} : { rate: payload.rate })
          })
          // With several instances: every other instance applies it too.
          yield* budgetSync.publish(key).pipe(Effect.catchTag("StoreError", storeUnavailable))
          yield* Effect.logInfo(`upstream ${key} budget changed`).pipe(Effect.annotateLogs({ upstream: key, ...payload }))
          return upstreamView(yield* budget.snapshot)
        })
      )
      .handle("breakers", () =>
        Effect.map(registry.snapshots, (all) =>
          all.map((b) => ({
            key: b.key,
            status: b.status,
            since: new Date(b.since).toISOString(),
            probesInFlight: b.probesInFlight,
            ...(b.retryAfterMs === undefined ? {} : { retryAfterMs: b.retryAfterMs })
          }))
        )
      )
  })
)

const OpsLive = HttpApiBuilder.group(Api, "ops", (handlers) =>
  Effect.gen(function* () {
    const store = yield* JobStore
    const runner = yield* JobRunner
    const health = yield* StorageHealth
    const metrics = yield* PrometheusText
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () =>
        Effect.gen(function* () {
          if (yield* Deferred.isDone(runner.shuttingDown)) {
            return yield* new Unavailable({ message: "shutting down" })
          }
          yield* Effect.mapError(store.ping, () => new Unavailable({ message: "the job database is unavailable" }))
          // Reads work on a full disk; whether writes do is what StorageHealth knows.
          yield* Effect.catchTag(health.refuseWhileFailing, "StorageFailing", storageFailing)
          return { status: "ready" as const }
        })
      )
      .handle("metrics", () => metrics.render)
  })
)

export const layer = Layer.mergeAll(BatchesLive, JobsLive, PostsLive, ProcessorsLive, OpsLive).pipe(Layer.provide(Admission.Default))
