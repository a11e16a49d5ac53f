/**
 * Which instances share the job database, for an operator (`GET /api/instances`). Alone on the
 * embedded file there is this process. In a cluster the runners are what `@effect/cluster` registered
 * in its `cluster_runners` table (address, `healthy` as its health checks last found it, and a
 * heartbeat refreshed with the runner's shard locks): a runner is alive when it is healthy and its
 * heartbeat is younger than the lock expiration, after which the cluster hands its shards to others.
 */
import type { SqlClient } from "@effect/sql"
import { SqlSchema } from "@effect/sql"
import { Clock, Effect, Schema } from "effect"
import { orStoreError, type StoreError } from "./store/Sql.js"

export interface Instance {
  readonly id: string
  readonly address: string | undefined
  readonly alive: boolean
  readonly self: boolean
  /** Epoch ms, where known (this instance). */
  readonly startedAt: number | undefined
  /** Epoch ms of the last heartbeat (now, for this process alone). */
  readonly lastSeen: number | undefined
}

/** This process, alone on its database. */
export const alone = (id: string, startedAt: number): Effect.Effect<ReadonlyArray<Instance>> =>
  Effect.map(Clock.currentTimeMillis, (now) => [
    { id, address: undefined, alive: true, self: true, startedAt, lastSeen: now }
  ])

const RunnerRow = Schema.Struct({
  address: Schema.String,
  healthy: Schema.Union(Schema.Boolean, Schema.transform(Schema.Number, Schema.Boolean, {
    strict: true,
    decode: (n) => n !== 0,
    encode: (b) => (b ? 1 : 0)
  })),
  // Seconds as a float8 (a number); a decimal string should a driver hand NUMERIC back.
  ageSeconds: Schema.propertySignature(Schema.Union(Schema.Number, Schema.NumberFromString)).pipe(Schema.fromKey("age_seconds"))
})

/**
 * (PostgreSQL.) The cluster's runners. The heartbeat column is a TIMESTAMP without time zone written
 * as `NOW()` in the session's zone, so its age is taken in the database against `LOCALTIMESTAMP`
 * (same zone) rather than compared with this machine's clock.
 */
export const clusterRunners = (options: {
  readonly sql: SqlClient.SqlClient
  /** This runner's address (`RUNNER_HOST:RUNNER_PORT`), as the cluster stores it. */
  readonly self: string
  readonly startedAt: number
  readonly lockExpirationMs: number
}): Effect.Effect<ReadonlyArray<Instance>, StoreError> => {
  const { sql } = options
  const rows = SqlSchema.findAll({
    Request: Schema.Void,
    Result: RunnerRow,
    execute: () =>
      sql`SELECT address, healthy, EXTRACT(EPOCH FROM (LOCALTIMESTAMP - last_heartbeat))::float8 AS age_seconds
          FROM cluster_runners ORDER BY address`
  })
  return Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const runners = yield* rows(undefined)
    const listed = runners.map((row): Instance => {
      const ageMs = Math.max(0, row.ageSeconds * 1000)
      const self = row.address === options.self
      return {
        id: row.address,
        address: row.address,
        alive: row.healthy && ageMs < options.lockExpirationMs,
        self,
        startedAt: self ? options.startedAt : undefined,
        lastSeen: Math.round(now - ageMs)
      }
    })
    // Before the cluster registered this runner (starting) or after it dropped it (a lost database).
    if (listed.some((i) => i.self)) return listed
    const unregistered: Instance = {
      id: options.self, address: options.self, alive: false, self: true, startedAt: options.startedAt, lastSeen: undefined
    }
    return [...listed, unregistered]
  }).pipe(orStoreError("reading the cluster's runners"))
}
