/** Probes and scraping: `/health` (the process answers), `/ready` (storage usable, not shutting down), `/metrics`. */
import { HttpApiBuilder } from "@effect/platform"
import { Deferred, Effect } from "effect"
import { JobRunner } from "../../jobs/JobRunner.js"
import { JobStore } from "../../jobs/JobStore.js"
import { StorageHealth } from "../../jobs/StorageHealth.js"
import { Api, Unavailable } from "../Api.js"
import { PrometheusText } from "../Metrics.js"
import { storageFailing } from "./DomainErrors.js"

export const OpsLive = HttpApiBuilder.group(Api, "ops", (handlers) =>
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
