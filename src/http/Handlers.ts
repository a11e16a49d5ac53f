/**
 * The handlers of the HTTP contract, one module per API group in `handlers/`: batch routes become
 * durable jobs (answered when done, as 202 + Location with `Prefer: respond-async`, or as an
 * NDJSON/SSE event stream), plus jobs, tracked posts, run-time settings, instances and operations. Domain errors
 * are mapped to the contract's errors at this boundary (`handlers/DomainErrors.ts`).
 */
import { Layer } from "effect"
import { Admission } from "./Admission.js"
import { BatchesLive } from "./handlers/Batches.js"
import { InstancesLive } from "./handlers/Instances.js"
import { JobsLive } from "./handlers/Jobs.js"
import { OpsLive } from "./handlers/Ops.js"
import { PostsLive } from "./handlers/Posts.js"
import { ProcessorsLive } from "./handlers/Processors.js"
import { UpstreamHistory } from "./UpstreamHistory.js"

export { eventResponse } from "./handlers/EventStream.js"

export const layer = Layer.mergeAll(BatchesLive, JobsLive, PostsLive, ProcessorsLive, InstancesLive, OpsLive).pipe(
  Layer.provide(Admission.Default),
  // Its sampling fiber lives as long as the HTTP service.
  Layer.provide(UpstreamHistory.Default)
)
