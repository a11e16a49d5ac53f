/**
 * The HTTP contract of the service (no Node imports, no server code): the guide's three batch routes,
 * jobs, tracked posts and operations. The request and response schemas live in `src/domain/` (which
 * imports only `effect`); the groups in `api/`; this module puts them together and re-exports them,
 * so the server (`Server.ts`) and the typed client (`Client.ts`) share one import.
 */
import { HttpApi, OpenApi } from "@effect/platform"
import { BatchesGroup } from "./api/Batches.js"
import { NotFound, Unavailable } from "./api/Errors.js"
import { InstancesGroup } from "./api/Instances.js"
import { JobsGroup } from "./api/Jobs.js"
import { OpsGroup } from "./api/Ops.js"
import { PostsGroup } from "./api/Posts.js"
import { ProcessorsGroup } from "./api/Processors.js"

export * from "../domain/Batches.js"
export * from "../domain/JobQueries.js"
export * from "../domain/Operations.js"
export * from "../domain/Posts.js"
export { JobEvent } from "../domain/JobEvent.js"
export { IntFromDecimal, NumberFromDecimal } from "../domain/Wire.js"
export * from "./api/Errors.js"
export { BatchesGroup, InstancesGroup, JobsGroup, OpsGroup, PostsGroup, ProcessorsGroup }

export class Api extends HttpApi.make("parallel-processor")
  .add(BatchesGroup)
  .add(JobsGroup)
  .add(PostsGroup)
  .add(ProcessorsGroup)
  .add(InstancesGroup)
  .add(OpsGroup)
  .addError(NotFound)
  .addError(Unavailable)
  .annotate(OpenApi.Title, "parallel-processor")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(
    OpenApi.Description,
    "Runs many slow, flaky upstream calls in parallel as durable jobs: timeouts, retries, circuit breakers, streaming progress."
  ) {}
