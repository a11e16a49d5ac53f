/** The jobs routes: list (keyset or offset paged), one job with its first results, results by index, events, cancel. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { encodeJobCursor, MAX_RESULTS_PAGE } from "../../domain/JobQueries.js"
import { JobRunner } from "../../jobs/JobRunner.js"
import { Jobs } from "../../jobs/Jobs.js"
import { Api, BadRequest } from "../Api.js"
import { notFound, storeUnavailable } from "./DomainErrors.js"
import { eventResponse } from "./EventStream.js"

/** `GET /api/jobs/{id}/results` without `limit`. */
const DEFAULT_RESULTS_PAGE = 100

export const JobsLive = HttpApiBuilder.group(Api, "jobs", (handlers) =>
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
