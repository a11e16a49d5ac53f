/**
 * The tables instances sharing a PostgreSQL database coordinate through: each runner's leased share
 * of a cluster-wide limit (`pp_gate_claims`), the cluster-wide state of each upstream's breaker and
 * who holds its half-open probe (`pp_breakers`), and each upstream's shared cooldown and operator
 * settings (`pp_upstreams`). With the embedded SQLite file there is one process and nothing here is
 * used. Part fencing is not a table: it is PostgreSQL advisory locks (`PartLocks`).
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { Effect, Schema } from "effect"
import { StoreSchema } from "./Migrations.js"
import { column, Int, Nullable, orStoreError } from "./Sql.js"

const Claim = Schema.Struct({
  runner: Schema.String,
  claim: Int,
  wants: Int,
  expiresAt: column(Int, "expires_at")
})

export const BreakerState = Schema.Struct({
  breaker: Schema.String,
  state: Schema.Literal("open", "closed"),
  openUntil: column(Int, "open_until"),
  updatedAt: column(Int, "updated_at")
})
export type BreakerState = typeof BreakerState.Type

export const UpstreamState = Schema.Struct({
  upstream: Schema.String,
  cooldownUntil: column(Int, "cooldown_until"),
  /** An operator's settings for the upstream's budget, as JSON (applied by `ClusterBudgets`). */
  settings: Nullable(Schema.String),
  settingsAt: column(Int, "settings_at")
})
export type UpstreamState = typeof UpstreamState.Type

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  const claimsOf = SqlSchema.findAll({
    Request: Schema.String,
    Result: Claim,
    execute: (gate) => sql`SELECT runner, claim, wants, expires_at FROM pp_gate_claims WHERE gate = ${gate}`
  })

  /**
   * (PostgreSQL only.) One runner's share of a cluster-wide limit (`gate`), renewed under a lock on the gate's rows:
   * the shares of live runners never add up to more than `limit`, a runner never gets less than what
   * it may have in use (`floor`), and runners that want more than they hold get shares in proportion to what they want. A runner that stops
   * renewing (dead) loses its share when its lease runs out.
   */
  const renewClaim = (gate: string, runner: string, limit: number, floor: number, wants: number, leaseMs: number) =>
    Effect.gen(function* () {
      // One lock per gate (row locks would not cover runners whose rows do not exist yet).
      yield* sql`SELECT pg_advisory_xact_lock(hashtext(${gate}))`
      const now = Date.now()
      yield* sql`INSERT INTO pp_gate_claims ${sql.insert({ gate, runner, claim: 0, wants, expires_at: now + leaseMs })} ON CONFLICT DO NOTHING`
      const rows = yield* claimsOf(gate)
      const others = rows.filter((r) => r.runner !== runner && r.expiresAt > now)
      const held = others.reduce((sum, r) => sum + r.claim, 0)
      const free = Math.max(0, limit - held)
      // Fair: the limit split in proportion to what each runner still has to run (a job's parts
      // rarely divide evenly between runners), at least one permit for a runner with work.
      const totalWants = others.reduce((sum, r) => sum + Math.max(0, r.wants), 0) + Math.max(0, wants)
      const fair = wants <= 0 ? 0 : Math.max(1, Math.floor((limit * wants) / totalWants))
      const starving = others.some((r) => r.wants > r.claim)
      const target = Math.min(wants, free, starving ? fair : limit)
      // `floor` is what this runner may have in use right now; its recorded share never goes below
      // it, so shrinking takes effect one renewal later, after the runner has stopped handing out
      // the difference.
      const claim = Math.max(target, floor)
      yield* sql`UPDATE pp_gate_claims SET claim = ${claim}, wants = ${wants}, expires_at = ${now + leaseMs} WHERE gate = ${gate} AND runner = ${runner}`
      // Not settled while this runner has less than it may get once others shrink, a shrink of its
      // own is still to be recorded, or another runner waits for permits this one holds beyond its
      // fair part: the runner should come back soon.
      const settled = target >= Math.min(wants, starving ? fair : limit) && claim <= target && !(starving && target > fair)
      return { target, settled }
    }).pipe(sql.withTransaction, orStoreError("renewing a concurrency share"))

  const dropClaim = (gate: string, runner: string) =>
    sql`DELETE FROM pp_gate_claims WHERE gate = ${gate} AND runner = ${runner}`.pipe(
      Effect.asVoid,
      orStoreError("releasing a concurrency share")
    )

  /** The cluster-wide state of an upstream's breaker, written by the instance that saw it change. */
  const publishBreaker = (breaker: string, state: "open" | "closed", openUntil: number, at: number) =>
    sql`INSERT INTO pp_breakers ${sql.insert({ breaker, state, open_until: openUntil, probe_holder: null, probe_expires: null, updated_at: at })}
      ON CONFLICT (breaker) DO UPDATE SET state = excluded.state, open_until = excluded.open_until,
      probe_holder = NULL, probe_expires = NULL, updated_at = excluded.updated_at`.pipe(
      Effect.asVoid,
      orStoreError("publishing a breaker state")
    )

  const breakerStates = SqlSchema.findAll({
    Request: Schema.Void,
    Result: BreakerState,
    execute: () => sql`SELECT breaker, state, open_until, updated_at FROM pp_breakers`
  })(undefined).pipe(orStoreError("reading breaker states"))

  /** The one half-open probe of an open breaker, cluster-wide: true for the instance that gets it. */
  const claimProbe = (breaker: string, runner: string, now: number, ttlMs: number) =>
    sql`UPDATE pp_breakers SET probe_holder = ${runner}, probe_expires = ${now + ttlMs}
      WHERE breaker = ${breaker} AND state = 'open' AND open_until <= ${now}
      AND (probe_holder IS NULL OR probe_expires < ${now} OR probe_holder = ${runner}) RETURNING breaker`.pipe(
      Effect.map((rows) => rows.length > 0),
      orStoreError("claiming a breaker probe")
    )

  /** (PostgreSQL only.) A cooldown one instance saw: every instance pauses admission until then. */
  const shareCooldown = (upstream: string, until: number) =>
    sql`INSERT INTO pp_upstreams ${sql.insert({ upstream, cooldown_until: until, settings: null, settings_at: 0 })}
      ON CONFLICT (upstream) DO UPDATE SET cooldown_until = GREATEST(pp_upstreams.cooldown_until, excluded.cooldown_until)`.pipe(
      Effect.asVoid,
      orStoreError("sharing an upstream cooldown")
    )

  /** (PostgreSQL only.) An operator's change to an upstream budget (JSON), for every instance to apply. */
  const publishUpstreamSettings = (upstream: string, settings: string, at: number) =>
    sql`INSERT INTO pp_upstreams ${sql.insert({ upstream, cooldown_until: 0, settings, settings_at: at })}
      ON CONFLICT (upstream) DO UPDATE SET settings = excluded.settings, settings_at = excluded.settings_at`.pipe(
      Effect.asVoid,
      orStoreError("publishing upstream settings")
    )

  const upstreamStates = SqlSchema.findAll({
    Request: Schema.Void,
    Result: UpstreamState,
    execute: () => sql`SELECT upstream, cooldown_until, settings, settings_at FROM pp_upstreams`
  })(undefined).pipe(orStoreError("reading upstream states"))

  return {
    renewClaim,
    dropClaim,
    publishBreaker,
    breakerStates,
    claimProbe,
    shareCooldown,
    publishUpstreamSettings,
    upstreamStates
  } as const
})

/** The coordination tables as a service (over the migrated schema). */
export class CoordinationStore extends Effect.Service<CoordinationStore>()("parallel-processor/CoordinationStore", {
  effect: Effect.zipRight(StoreSchema, make),
  dependencies: [StoreSchema.Default]
}) {}
