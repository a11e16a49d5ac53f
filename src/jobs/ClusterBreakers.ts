/**
 * Circuit breakers shared by every instance on one PostgreSQL database. Each instance keeps its own
 * breakers (they count its calls); when one opens or closes because of its own calls, the change is
 * written to `pp_breakers`, and every instance polls that table and overrides its local breaker, so
 * an upstream that is dead for one instance fails fast on all of them. When the open period ends,
 * exactly one instance claims the half-open probe; the others stay open until its outcome is known.
 * Part of the cluster topology (`Topology`); one process has nothing to share.
 */
import { Config, Duration, Effect, Layer, Schedule, Stream } from "effect"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { runnerId } from "./Cluster.js"
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

    // Local changes → the shared table.
    yield* registry.changes.pipe(
      Stream.filter((t) => t.external !== true && (t.to === "open" || (t.to === "closed" && t.from === "half_open"))),
      Stream.runForEach((t) =>
        Effect.gen(function* () {
          const breaker = yield* registry.get(t.key)
          const until = (yield* breaker.openUntil) ?? t.at
          yield* coordination.publishBreaker(t.key, t.to === "open" ? "open" : "closed", until, t.at)
        }).pipe(Effect.catchAll((error) => Effect.logWarning(`could not share breaker ${t.key}: ${error.message}`)))
      ),
      Effect.interruptible,
      Effect.forkScoped
    )

    // The shared table → local breakers.
    const sync = Effect.gen(function* () {
      const now = Date.now()
      for (const row of yield* coordination.breakerStates) {
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
        yield* breaker.override({ _tag: "Open", until: mine ? now : now + HOLD_MS })
      }
    }).pipe(Effect.catchAll((error) => Effect.logWarning(`could not read shared breakers: ${error.message}`)))
    yield* sync.pipe(Effect.repeat(Schedule.spaced(every)), Effect.interruptible, Effect.forkScoped)
  })
)
