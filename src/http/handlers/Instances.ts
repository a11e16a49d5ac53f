/** `GET /api/instances`: the topology knows who shares the database; this puts it on the wire. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import type { Instance } from "../../jobs/Instances.js"
import { Topology } from "../../jobs/Topology.js"
import { Api, type InstanceView } from "../Api.js"
import { storeUnavailable } from "./DomainErrors.js"

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString())

const view = (i: Instance): InstanceView => {
  const address = i.address
  const startedAt = iso(i.startedAt)
  const lastSeen = iso(i.lastSeen)
  return {
    id: i.id,
    alive: i.alive,
    self: i.self,
    ...(address === undefined ? {} : { address }),
    ...(startedAt === undefined ? {} : { startedAt }),
    ...(lastSeen === undefined ? {} : { lastSeen })
  }
}

export const InstancesLive = HttpApiBuilder.group(Api, "instances", (handlers) =>
  Effect.gen(function* () {
    const topology = yield* Topology
    return handlers.handle("list", () =>
      topology.instances.pipe(
        Effect.map((all) => all.map(view)),
        Effect.catchTag("StoreError", storeUnavailable)
      )
    )
  })
)
