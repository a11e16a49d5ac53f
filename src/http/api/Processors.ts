/**
 * Run-time settings (group `processors`): the processors' limits, the upstream budgets (and their
 * recent history) and the circuit breakers, read and changed while batches run.
 */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import {
  BreakerView,
  ProcessorPatch,
  ProcessorView,
  UpstreamHistoryView,
  UpstreamPatch,
  UpstreamView
} from "../../domain/Operations.js"
import { Authorization, BadRequest, NotFound, RequestGuard } from "./Errors.js"

export class ProcessorsGroup extends HttpApiGroup.make("processors")
  .add(HttpApiEndpoint.get("list", "/api/processors").addSuccess(Schema.Array(ProcessorView)))
  .add(
    HttpApiEndpoint.patch("update", "/api/processors/:name")
      .setPath(Schema.Struct({ name: Schema.String }))
      .setPayload(ProcessorPatch)
      .addSuccess(ProcessorView)
      .addError(NotFound)
      .annotate(OpenApi.Description, "Change maxConcurrent / timeoutSeconds at run time; running batches pick the change up.")
  )
  .add(HttpApiEndpoint.get("breakers", "/api/breakers").addSuccess(Schema.Array(BreakerView)))
  .add(
    HttpApiEndpoint.get("upstreams", "/api/upstreams")
      .addSuccess(Schema.Array(UpstreamView))
      .annotate(OpenApi.Description, "Each upstream's budget: ceiling, current adaptive limit, in flight, waiting, cooldown, rate.")
  )
  .add(
    HttpApiEndpoint.get("upstreamHistory", "/api/upstreams/history")
      .addSuccess(UpstreamHistoryView)
      .annotate(
        OpenApi.Description,
        "This instance's upstream budgets (limit, ceiling, in flight, waiting, 429s) sampled every 2 s over the last 10 minutes, oldest first."
      )
  )
  .add(
    HttpApiEndpoint.patch("updateUpstream", "/api/upstreams/:key")
      .setPath(Schema.Struct({ key: Schema.String }))
      .setPayload(UpstreamPatch)
      .addSuccess(UpstreamView)
      .addError(NotFound)
      .annotate(OpenApi.Description, "Change an upstream's ceiling, request rate or adaptation; applied at once.")
  )
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}
