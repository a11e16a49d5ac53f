/**
 * The batch routes: each batch becomes a durable job, answered as the caller asked — the finished job
 * (sync), 202 + Location (`Prefer: respond-async`), or its event stream (post generation).
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { BatchHeaders } from "../../domain/Batches.js"
import type { JobOptions } from "../../domain/Job.js"
import type { JobKind } from "../../domain/Kinds.js"
import { JobRunner } from "../../jobs/JobRunner.js"
import { JobStore } from "../../jobs/JobStore.js"
import { Jobs } from "../../jobs/Jobs.js"
import { Admission } from "../Admission.js"
import { Api } from "../Api.js"
import { conflict, notFound, storageFailing, storeUnavailable } from "./DomainErrors.js"
import { eventResponse } from "./EventStream.js"

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

export const BatchesLive = HttpApiBuilder.group(Api, "batches", (handlers) =>
  Effect.gen(function* () {
    const jobs = yield* Jobs
    const store = yield* JobStore
    const runner = yield* JobRunner
    const admission = yield* Admission

    const accepted = (job: { readonly id: string }) => `/api/jobs/${job.id}`

    /** Accept the batch as a job, then answer as the caller asked. */
    const submit = (kind: JobKind, inputs: ReadonlyArray<unknown>, options: JobOptions, headers: BatchHeaders, stream: boolean) =>
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
