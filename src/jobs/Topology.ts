/**
 * The deployment topology: everything that differs between one process on the embedded SQLite file
 * and several instances sharing a PostgreSQL database, decided once, from the database's location.
 * The rest of `jobs/` asks this service instead of the database dialect: how a job's workflow is laid
 * out and ended, who admits a run's attempts besides the upstream budgets (a storage valve, or the
 * job's cluster-wide share), who may run a part (fencing), how a job's progress is followed, what a
 * storage outage does, and which side services run (breaker and budget sync, the stall watchdog).
 */
import type { SqlClient } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import { type ConfigError, Context, Effect, Layer } from "effect"
import type { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import type { UpstreamBudgets } from "../upstream/Budgets.js"
import type { BudgetSettingsSync } from "./ClusterBudgets.js"
import * as Database from "./Database.js"
import type { CoordinationStore } from "./store/Coordination.js"
import * as ClusterTopology from "./topology/ClusterTopology.js"
import type { Mode, TopologyShape } from "./topology/Shape.js"
import * as SingleProcess from "./topology/SingleProcess.js"

export type { AdmissionRequest, FollowSources, JobSteps, Mode, RunAdmission, TopologyShape } from "./topology/Shape.js"

export class Topology extends Context.Tag("parallel-processor/Topology")<Topology, TopologyShape>() {}

/** The one place the database's dialect decides the deployment mode. */
export const modeOf = (where: Database.DatabaseLocation): Mode => (where.dialect === "pg" ? "cluster" : "single-process")

/**
 * Whether the process runs on the time-sliced scheduler (5 ms slices, see `http/EventLoop.ts`): with
 * the embedded database, whose synchronous statements otherwise keep Node from its sockets. In a
 * cluster it is not needed: the same burst of 150 sync batches on one PostgreSQL instance keeps
 * `/health` at p99 97–101 ms without it and 90 ms with it (test/overload.test.ts, session 14), since
 * every database round trip hands the loop back. (It was first turned off because under it a single
 * instance did not come back from a database restart; with the cluster watchdog since added,
 * test/cluster.outage.test.ts passed 3 of 3 with it on.)
 */
export const usesTimeSlicedScheduler = Effect.map(Database.location, (where) => modeOf(where) === "single-process")

/**
 * The topology for the configured database, with what comes with it: the workflow engine on one runner
 * or on many, and the cluster's breaker and budget synchronisation.
 */
export const layer: Layer.Layer<
  Topology | WorkflowEngine | BudgetSettingsSync,
  ConfigError.ConfigError,
  SqlClient.SqlClient | Database.Location | CoordinationStore | CircuitBreakerRegistry | UpstreamBudgets
> = Layer.unwrapEffect(
  Effect.map(Database.Location, (where) =>
    modeOf(where) === "cluster"
      ? ClusterTopology.layer(Layer.scoped(Topology, ClusterTopology.make))
      : Layer.merge(Layer.scoped(Topology, SingleProcess.make), SingleProcess.services)
  )
)
