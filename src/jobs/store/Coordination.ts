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
import { column, Int, Nullable, onceSucceeded, orStoreError, StoreError } from "./Sql.js"

const Renewed = Schema.Struct({ target: Int, settled: Schema.Boolean })

/** Arbitrary, fixed: instances starting together take turns (re)creating the renewal function. */
const RENEW_FUNCTION_LOCK_KEY = 7_240_611_003

/**
 * A runner's renewal of its share of a gate, run by the server in one statement (`renewClaim`).
 * One lock per gate (row locks would not cover runners whose rows do not exist yet); in a PL/pgSQL
 * function each statement sees what committed before it, so the read after the lock sees every
 * renewal that held it before. The rule: the limit split in proportion to what each runner still
 * has to run (a job's parts rarely divide evenly between runners), at least one permit for a
 * runner with work; the recorded share never below `p_floor` (what this runner may have in use), so
 * shrinking takes effect one renewal later, after the runner has stopped handing out the difference.
 * Versioned by name: instances of an older release keep the function they call.
 */
const RENEW_CLAIM_FUNCTION = `CREATE OR REPLACE FUNCTION pp_renew_claim_v1(
    p_gate TEXT, p_runner TEXT, p_limit BIGINT, p_floor BIGINT, p_wants BIGINT, p_now BIGINT, p_lease BIGINT)
  RETURNS TABLE (target BIGINT, settled BOOLEAN) LANGUAGE plpgsql AS $fn$
  DECLARE
    held BIGINT; total_wants BIGINT; starving BOOLEAN; fair BIGINT; cap BIGINT; t BIGINT; c BIGINT;
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(p_gate));
    SELECT COALESCE(SUM(g.claim), 0), COALESCE(SUM(GREATEST(g.wants, 0)), 0) + GREATEST(p_wants, 0),
           COALESCE(BOOL_OR(g.wants > g.claim), FALSE)
      INTO held, total_wants, starving
      FROM pp_gate_claims g WHERE g.gate = p_gate AND g.runner <> p_runner AND g.expires_at > p_now;
    fair := CASE WHEN p_wants <= 0 THEN 0 ELSE GREATEST(1, (p_limit * p_wants) / total_wants) END;
    cap := CASE WHEN starving THEN fair ELSE p_limit END;
    t := LEAST(p_wants, GREATEST(0, p_limit - held), cap);
    c := GREATEST(t, p_floor);
    INSERT INTO pp_gate_claims AS g (gate, runner, claim, wants, expires_at)
      VALUES (p_gate, p_runner, c, p_wants, p_now + p_lease)
      ON CONFLICT (gate, runner) DO UPDATE SET claim = excluded.claim, wants = excluded.wants, expires_at = excluded.expires_at;
    RETURN QUERY SELECT t, (t >= LEAST(p_wants, cap) AND c <= t AND NOT (starving AND t > fair));
  END
  $fn$`

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

  /**
   * The renewal as one PostgreSQL function (created on first use, see `RENEW_CLAIM_FUNCTION`): one
   * round trip, and the gate's lock is held only while the server runs it. As a transaction driven
   * from here (BEGIN, lock, insert, read, update, COMMIT) the lock was held across six round trips,
   * each waiting for this process's event loop, which on a loaded machine is busy running the job:
   * every runner's renewals of the gate queued behind it. Measured (`bench:cluster --pg-stats`, C1 on
   * 3 instances): 250 s of lock waits over three 2,000-item runs, the job 5 × slower than on one.
   */
  const ensureRenewFunction = onceSucceeded(
    Effect.zipRight(sql`SELECT pg_advisory_xact_lock(${RENEW_FUNCTION_LOCK_KEY})`, sql.unsafe(RENEW_CLAIM_FUNCTION)).pipe(
      // Two instances replacing one function at once fail ("tuple concurrently updated"): take turns.
      sql.withTransaction
    )
  )
  const renewed = SqlSchema.single({
    Request: Schema.Struct({
      gate: Schema.String,
      runner: Schema.String,
      limit: Schema.Number,
      floor: Schema.Number,
      wants: Schema.Number,
      now: Schema.Number,
      leaseMs: Schema.Number
    }),
    Result: Renewed,
    execute: (r) =>
      sql`SELECT target, settled FROM pp_renew_claim_v1(${r.gate}, ${r.runner}, ${r.limit}, ${r.floor}, ${r.wants}, ${r.now}, ${r.leaseMs})`
  })

  /**
   * (PostgreSQL only.) One runner's share of a cluster-wide limit (`gate`), renewed under a lock on the gate:
   * the shares of live runners never add up to more than `limit`, a runner never gets less than what
   * it may have in use (`floor`), and runners that want more than they hold get shares in proportion to what they want. A runner that stops
   * renewing (dead) loses its share when its lease runs out. `settled` is false while this runner
   * has less than it may get once others shrink, a shrink of its own is still to be recorded, or
   * another runner waits for permits this one holds beyond its fair part: it should come back soon.
   */
  const renewClaim = (gate: string, runner: string, limit: number, floor: number, wants: number, leaseMs: number) =>
    ensureRenewFunction.pipe(
      Effect.zipRight(Effect.suspend(() => renewed({ gate, runner, limit, floor, wants, now: Date.now(), leaseMs }))),
      // The function returns one row; none would be a broken function, reported as a failed renewal.
      Effect.catchTag("NoSuchElementException", (cause) => new StoreError({ message: "database: the renewal returned no row", cause })),
      orStoreError("renewing a concurrency share")
    )

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
