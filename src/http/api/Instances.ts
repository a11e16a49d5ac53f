/** The instances sharing the job database (group `instances`): which are alive, which one answered. */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { InstanceView } from "../../domain/Operations.js"
import { Authorization, RequestGuard } from "./Errors.js"

export class InstancesGroup extends HttpApiGroup.make("instances")
  .add(
    HttpApiEndpoint.get("list", "/api/instances")
      .addSuccess(Schema.Array(InstanceView))
      .annotate(
        OpenApi.Description,
        "Alone on the embedded database: this process. With PostgreSQL: every runner the cluster knows, alive = healthy and seen within RUNNER_LOCK_EXPIRATION."
      )
  )
  .middleware(RequestGuard)
  .middleware(Authorization) {}
