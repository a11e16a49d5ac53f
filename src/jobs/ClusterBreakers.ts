/**
 * Circuit breakers shared by every instance on one PostgreSQL database. Each instance keeps its own
 * breakers (they count its calls); when one opens or closes because of its own calls, the change is
 * written to `pp_breakers` and announced (`JobNotifications.signal`), and every instance reads that
 * table and overrides its local breaker, so an upstream that is dead for one instance fails fast on
 * all of them. When the open period ends, exactly one instance claims the half-open probe; the others
 * stay open until its outcome is known. The table is read when a change is announced, every
 * `CLUSTER_BREAKER_POLL_INTERVAL` while a shared breaker is open (the probe claim is timed by it) or
 * notifications are not heard, and at the notifications' 5 s sweep otherwise: an idle cluster read it
 * four times a second per instance for nothing.
 * Part of the cluster topology (`Topology`); one process has nothing to share.
 */
import { Config, Duration, Effect, Layer, Stream } from "effect"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { runnerId } from "./Cluster.js"
import { Notifications, readOnWake } from "./JobNotifications.js"
import { CoordinationStore } from "./store/Coordination.js"

/** While another instance probes, the others stay open this much longer each poll. */
const HOLD_MS = 2_000
const PROBE_TTL_MS = 10_000

export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const coordination = yield* CoordinationStore
    const registry = yield* CircuitBreakerRegistry
    const me = yield* runnerId
    const every = yield* Config.duration("CLUSTER_BREAKER_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(250)))
    const notifications = yield* Notifications

    // Local changes → the shared table.
    yield* registry.changes.pipe(
      Stream.filter((t) => t.external !== true && (t.to === "open" || (t.to === "closed" && t.from === "half_open"))),
      Stream.runForEach((t) =>
        Effect.gen(function* () {
          const breaker = yield* registry.get(t.key)
          const until = (yield* breaker.openUntil) ?? t.at
          yield* coordination.publishBreaker(t.key, t.to === "open" ? "open" : "closed", until, t.at)
          yield* notifications.signal("breakers")
        }).pipe(Effect.catchAll((error) => Effect.logWarning(`could not share breaker ${t.key}: ${error.message}`)))
      ),
      Effect.interruptible,
      Effect.forkScoped
    )

    // The shared table → local breakers.
    /** Whether the last read found a shared breaker open: its probe claim needs the table read on time. */
    let anyOpen = false
    const sync = Effect.gen(function* () {
      const now = Date.now()
      const rows = yield* coordination.breakerStates
      anyOpen = rows.some((row) => row.state === "open")
      for (const row of rows) {
        const breaker = yield* registry.get(row.breaker)
        const local = yield* breaker.snapshot
        if (row.state === "closed") {
          // Only a close newer than the local state: a local open not yet written must not be undone.
          if (local.status !== "closed" && row.updatedAt > local.since) yield* breaker.override({ _tag: "Closed" })
          continue
        }
        if (now < row.openUntil) {
          // Open everywhere, a little past the shared deadline, so nobody probes on its own.
          yield* breaker.override({ _tag: "Open", until: row.openUntil + HOLD_MS })
          continue
        }
        if (local.status === "half_open") continue
        const mine = yield* coordination.claimProbe(row.breaker, me, now, PROBE_TTL_MS)
        // The probe's instance lets its next call through; the others keep failing fast meanwhile.
        // `Probe`, not "open until now": a call that became the probe during the claim's round trip
        // keeps it (an "open until now" here let a second probe through; CI saw 3 calls, not 1).
        yield* breaker.override(mine ? { _tag: "Probe" } : { _tag: "Open", until: now + HOLD_MS })
      }
    }).pipe(Effect.catchAll((error) => Effect.logWarning(`could not read shared breakers: ${error.message}`)))
    // Polled too while a shared breaker is open: its probe claim needs the table read on time.
    yield* readOnWake(notifications, "breakers", sync, every, () => anyOpen).pipe(Effect.interruptible, Effect.forkScoped)
  })
)
