/** The guide's three batch routes: each becomes a durable job, answered when done, as 202, or as a stream. */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import {
  BatchGenerateBody,
  BatchHeaders,
  BatchResponse,
  FetchAllPayload,
  JobAccepted,
  LimitParams,
  TriggerConfigs
} from "../../domain/Batches.js"
import { Authorization, BadRequest, Conflict, Overloaded, RequestGuard, Unavailable } from "./Errors.js"

const Ndjson = HttpApiSchema.Text({ contentType: "application/x-ndjson" })

export class BatchesGroup extends HttpApiGroup.make("batches")
  .add(
    HttpApiEndpoint.post("fetchAllInteractions", "/api/interactions/fetch-all-interactions")
      .setPayload(FetchAllPayload)
      .setHeaders(BatchHeaders)
      .addSuccess(BatchResponse)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(OpenApi.Description, "Fetch views/likes/comments/shares for the given posts, or every tracked post with an articleId.")
  )
  .add(
    HttpApiEndpoint.post("batchGenerateStream", "/api/post/batch-generate-stream")
      .setPayload(BatchGenerateBody)
      .setHeaders(BatchHeaders)
      .addSuccess(Ndjson)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(
        OpenApi.Description,
        "Generate posts with the LLM. Streams NDJSON events (started, item, progress, completed); SSE with Accept: text/event-stream."
      )
  )
  .add(
    HttpApiEndpoint.post("executeMultiple", "/api/intraday/parallel/execute-multiple")
      .setPayload(TriggerConfigs)
      .setUrlParams(LimitParams)
      .setHeaders(BatchHeaders)
      .addSuccess(BatchResponse)
      .addSuccess(JobAccepted, { status: 202 })
      .addError(Conflict)
      .annotate(OpenApi.Description, "Run intraday triggers (market screen + news search) in parallel.")
  )
  .addError(BadRequest)
  .addError(Unavailable)
  .addError(Overloaded)
  .middleware(RequestGuard)
  .middleware(Authorization) {}
