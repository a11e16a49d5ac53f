/** Jobs: the list, one job with its first results, its results paged, its event stream, cancelling it. */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { JobView } from "../../domain/Job.js"
import { EventsHeaders, JobPage, JobParams, JobWithResults, ListJobsParams, ResultsPage, ResultsParams } from "../../domain/JobQueries.js"
import { Authorization, BadRequest, NotFound, RequestGuard } from "./Errors.js"

const JobId = Schema.Struct({ id: Schema.String })

export class JobsGroup extends HttpApiGroup.make("jobs")
  .add(HttpApiEndpoint.get("list", "/api/jobs").setUrlParams(ListJobsParams).addSuccess(JobPage))
  .add(
    HttpApiEndpoint.get("get", "/api/jobs/:id")
      .setPath(JobId)
      .setUrlParams(JobParams)
      .addSuccess(JobWithResults)
      .addError(NotFound)
      .annotate(OpenApi.Description, "The job with its first 1000 results by index (`?results=0`–`1000` for fewer); the rest via /results.")
  )
  .add(
    HttpApiEndpoint.get("results", "/api/jobs/:id/results")
      .setPath(JobId)
      .setUrlParams(ResultsParams)
      .addSuccess(ResultsPage)
      .addError(NotFound)
      .annotate(OpenApi.Description, "A job's finished results in input order, paged by index: `after` = the previous page's `next`.")
  )
  .add(
    HttpApiEndpoint.get("events", "/api/jobs/:id/events")
      .setPath(JobId)
      .setHeaders(EventsHeaders)
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .addError(NotFound)
      .annotate(OpenApi.Description, "Server-sent events: stored events replayed, then live ones until the job ends (NDJSON with Accept: application/x-ndjson).")
  )
  .add(HttpApiEndpoint.del("cancel", "/api/jobs/:id").setPath(JobId).addSuccess(JobView).addError(NotFound))
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}
