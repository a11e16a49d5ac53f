/**
 * The coordination tables on PostgreSQL (src/jobs/store/Coordination.ts), against a real server
 * (test/support/postgres.ts): leased shares of a cluster-wide limit never add up to more than the
 * limit and are split by what each runner wants, a dead runner's share lapses with its lease, one
 * half-open probe per breaker cluster-wide, a shared cooldown only ever moves later, and operator
 * settings are read back as written. BIGINT columns come back from PostgreSQL as strings: the row
 * schemas must read them as numbers for any of this to hold. Also the instances list read from the
 * cluster's own runners table (src/jobs/Instances.ts), as @effect/cluster writes it.
 */
import * as Runner from "@effect/cluster/Runner"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import { SqlClient } from "@effect/sql"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted, Schema } from "effect"
import * as TestServices from "effect/TestServices"
import * as Instances from "../src/jobs/Instances.js"
import { CoordinationStore } from "../src/jobs/store/Coordination.js"
import { createDatabase, Postgres } from "./support/postgres.js"

const TIMEOUT = 120_000

const withCoordination = <A, E>(name: string, self: Effect.Effect<A, E, CoordinationStore | SqlClient.SqlClient>) =>
  Effect.gen(function* () {
    const server = yield* Postgres
    const url = yield* createDatabase(server.url, name)
    return yield* Effect.provide(self, CoordinationStore.Default.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: 3 }))))
  })

describe("CoordinationStore on PostgreSQL", () => {
  layer(Postgres.layer, { timeout: "120 seconds" })((it) => {
    it.effect(
      "shares of a limit: never more than the limit, split by what runners want, a lapsed lease frees its share",
      () =>
        withCoordination(
          "coord_shares",
          Effect.gen(function* () {
            const c = yield* CoordinationStore
            const lease = 60_000
            // Alone, a runner may take what it wants, up to the limit.
            expect(yield* c.renewClaim("g", "a", 10, 0, 20, lease)).toEqual({ target: 10, settled: true })
            // A second runner finds nothing free while the first holds it all, and is not settled.
            const b1 = yield* c.renewClaim("g", "b", 10, 0, 20, lease)
            expect(b1.target).toBe(0)
            expect(b1.settled).toBe(false)
            // The first, seeing the second starve, shrinks to its fair part (its floor: nothing in use).
            const a2 = yield* c.renewClaim("g", "a", 10, 0, 20, lease)
            expect(a2.target).toBe(5)
            // Now the second gets the rest; together exactly the limit.
            const b2 = yield* c.renewClaim("g", "b", 10, 0, 20, lease)
            expect(a2.target + b2.target).toBe(10)
            // What a runner has in use (its floor) is never taken from it, even over its fair part.
            expect((yield* c.renewClaim("h", "a", 4, 0, 4, lease)).target).toBe(4)
            const held = yield* c.renewClaim("h", "b", 4, 0, 4, lease)
            expect(held.target).toBe(0)
            const floored = yield* c.renewClaim("h", "a", 4, 3, 4, lease)
            expect(floored.settled).toBe(false)
            expect((yield* c.renewClaim("h", "b", 4, 0, 4, lease)).target).toBe(1)
            // A share whose lease ran out (a dead runner) counts for nothing.
            expect((yield* c.renewClaim("k", "dead", 6, 0, 6, -1)).target).toBe(6)
            expect((yield* c.renewClaim("k", "live", 6, 0, 6, lease)).target).toBe(6)
            // A dropped share is free at once.
            yield* c.dropClaim("g", "a")
            expect((yield* c.renewClaim("g", "b", 10, 0, 20, lease)).target).toBe(10)
          })
        ),
      TIMEOUT
    )

    it.effect(
      "shares of a limit under concurrent renewals: the recorded shares never add up to more than the limit",
      () =>
        withCoordination(
          "coord_shares_concurrent",
          Effect.gen(function* () {
            // The renewal is one server-side function: its lock and its read of the other shares must
            // see every renewal that committed before it, whichever connection ran it.
            const c = yield* CoordinationStore
            const sql = yield* SqlClient.SqlClient
            const limit = 10
            let seed = 7
            const next = (n: number) => {
              seed = (seed * 1103515245 + 12345) % 2147483648
              return seed % n
            }
            const renewals = Array.from({ length: 120 }, () => ({ runner: `r${next(5)}`, wants: next(25) }))
            const sums: Array<number> = []
            const total = sql`SELECT COALESCE(SUM(claim), 0)::int AS total FROM pp_gate_claims WHERE gate = 'c'`.pipe(
              Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ total: Schema.Number })))),
              Effect.map(([row]) => row.total)
            )
            yield* Effect.forEach(
              renewals,
              ({ runner, wants }, i) =>
                c.renewClaim("c", runner, limit, 0, wants, 60_000).pipe(
                  Effect.zipRight(i % 10 === 0 ? Effect.flatMap(total, (sum) => Effect.sync(() => sums.push(sum))) : Effect.void)
                ),
              { concurrency: 3 }
            )
            const final = yield* total
            expect(Math.max(final, ...sums)).toBeLessThanOrEqual(limit)
          })
        ),
      TIMEOUT
    )

    it.effect(
      "breakers: the state as published, one probe cluster-wide once the open period is over",
      () =>
        withCoordination(
          "coord_breakers",
          Effect.gen(function* () {
            const c = yield* CoordinationStore
            const now = 1_800_000_000_000
            yield* c.publishBreaker("forum", "open", now + 5_000, now)
            expect(yield* c.breakerStates).toEqual([{ breaker: "forum", state: "open", openUntil: now + 5_000, updatedAt: now }])
            expect(yield* c.claimProbe("forum", "a", now, 10_000)).toBe(false) // still open
            expect(yield* c.claimProbe("forum", "a", now + 5_000, 10_000)).toBe(true)
            expect(yield* c.claimProbe("forum", "b", now + 6_000, 10_000)).toBe(false) // a holds it
            expect(yield* c.claimProbe("forum", "a", now + 6_000, 10_000)).toBe(true) // a again
            expect(yield* c.claimProbe("forum", "b", now + 16_001, 10_000)).toBe(true) // a's claim lapsed
            yield* c.publishBreaker("forum", "closed", 0, now + 17_000)
            expect(yield* c.claimProbe("forum", "a", now + 18_000, 10_000)).toBe(false)
            expect(yield* c.breakerStates).toEqual([{ breaker: "forum", state: "closed", openUntil: 0, updatedAt: now + 17_000 }])
          })
        ),
      TIMEOUT
    )

    it.effect(
      "upstreams: a shared cooldown only moves later; settings read back as written",
      () =>
        withCoordination(
          "coord_upstreams",
          Effect.gen(function* () {
            const c = yield* CoordinationStore
            const now = 1_800_000_000_000
            yield* c.shareCooldown("news", now + 10_000)
            yield* c.shareCooldown("news", now + 5_000)
            yield* c.publishUpstreamSettings("market", `{"limit":5}`, now)
            yield* c.shareCooldown("market", now + 1_000)
            const states = yield* c.upstreamStates
            expect([...states].sort((a, b) => a.upstream.localeCompare(b.upstream))).toEqual([
              { upstream: "market", cooldownUntil: now + 1_000, settings: `{"limit":5}`, settingsAt: now },
              { upstream: "news", cooldownUntil: now + 10_000, settings: undefined, settingsAt: 0 }
            ])
          })
        ),
      TIMEOUT
    )

    it.effect(
      "the instances (GET /api/instances) are the cluster's runners: alive when healthy and seen within the lock expiration",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const url = yield* createDatabase(server.url, "coord_runners")
          // Sessions in a zone far from UTC: the heartbeat column is a TIMESTAMP without time zone.
          yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`ALTER DATABASE coord_runners SET timezone TO 'Asia/Taipei'`).pipe(
            Effect.provide(PgClient.layer({ url: Redacted.make(server.url), maxConnections: 1 }))
          )
          yield* Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            expect(yield* sql<{ readonly TimeZone: string }>`SHOW timezone`).toEqual([{ TimeZone: "Asia/Taipei" }])
            // The cluster's own storage creates and writes its runners table.
            const storage = yield* SqlRunnerStorage.make({})
            const runner = (port: number) => Runner.make({ address: RunnerAddress.make("127.0.0.1", port), groups: ["default"], weight: 1 })
            yield* storage.register(runner(24431), true)
            yield* storage.register(runner(24432), true)
            yield* storage.setRunnerHealth(RunnerAddress.make("127.0.0.1", 24432), false)
            yield* storage.register(runner(24433), true)
            yield* sql`UPDATE cluster_runners SET last_heartbeat = last_heartbeat - INTERVAL '1 minute' WHERE address = '127.0.0.1:24433'`
            const now = Date.now()
            const seen = yield* Instances.clusterRunners({ sql, self: "127.0.0.1:24431", startedAt: 123, lockExpirationMs: 10_000 })
            expect(seen.map(({ id, address, alive, self, startedAt }) => ({ id, address, alive, self, startedAt }))).toEqual([
              { id: "127.0.0.1:24431", address: "127.0.0.1:24431", alive: true, self: true, startedAt: 123 },
              { id: "127.0.0.1:24432", address: "127.0.0.1:24432", alive: false, self: false, startedAt: undefined },
              { id: "127.0.0.1:24433", address: "127.0.0.1:24433", alive: false, self: false, startedAt: undefined }
            ])
            // The heartbeat's age is measured in the database, whatever its time zone.
            expect(Math.abs((seen[0]?.lastSeen ?? 0) - now)).toBeLessThan(5_000)
            expect(Math.abs((seen[2]?.lastSeen ?? 0) - (now - 60_000))).toBeLessThan(5_000)
            // Not registered (yet): still listed as this instance, not alive.
            const starting = yield* Instances.clusterRunners({ sql, self: "127.0.0.1:9", startedAt: 1, lockExpirationMs: 10_000 })
            expect(starting.at(-1)).toMatchObject({ id: "127.0.0.1:9", self: true, alive: false })
          }).pipe(
            Effect.scoped,
            // The real clock: the heartbeats are compared with it.
            TestServices.provideLive,
            Effect.provide(ShardingConfig.layer({})),
            Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 }))
          )
        }),
      TIMEOUT
    )
  })
})
