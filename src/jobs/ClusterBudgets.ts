/**
 * Upstream budgets held by every instance on one PostgreSQL database together:
 * - the **ceiling** is cluster-wide: each instance leases a share of it (`CoordinationStore.renewClaim`, the
 *   same leases as a job's cluster-wide limit: shares of live instances never add up to more than the
 *   ceiling, in proportion to what each wants — calls in flight plus waiting — and a dead instance's
 *   share returns when its lease runs out) and admits within its share; a call that has to wait asks
 *   for a bigger share at once. Each instance adapts its own limit within its share.
 * - a **cooldown** one instance sees (a 429/503 with a wait) is written to `pp_upstreams`, and every
 *   instance pauses admission until then;
 * - an operator's **PATCH** on one instance is written there too, and every instance applies it
 *   (instances that start later as well).
 * Cooldowns and settings are announced (`JobNotifications.signal`) and read when announced, at the
 * notifications' 5 s sweep, and every `CLUSTER_BUDGET_POLL_INTERVAL` only while notifications are not
 * heard: read four times a second regardless, they were a third of an idle instance's statements.
 * With SQLite (one process) the budgets are the process's own and `publish` does nothing.
 */
import { Config, Context, Duration, Effect, Fiber, Layer, Queue, Schema, Stream } from "effect"
import * as Budget from "../engine/Budget.js"
import { UpstreamBudgets, upstreamKeys, type UpstreamKey } from "../upstream/Budgets.js"
import { runnerId } from "./Cluster.js"
import * as ClusterGate from "./ClusterGate.js"
import { Notifications, readOnWake } from "./JobNotifications.js"
import { CoordinationStore } from "./store/Coordination.js"
import type { StoreError } from "./JobStore.js"

/** What a PATCH set, as stored for the other instances: the budget's whole operator-set state. */
const StoredSettings = Schema.parseJson(
  Schema.Struct({ ceiling: Schema.Number, adaptive: Schema.Boolean, rate: Schema.NullOr(Schema.String) })
)

export class BudgetSettingsSync extends Context.Tag("parallel-processor/BudgetSettingsSync")<
  BudgetSettingsSync,
  {
    /** Tells every other instance about the operator-set state of `key`'s budget (after a PATCH here). */
    readonly publish: (key: UpstreamKey) => Effect.Effect<void, StoreError>
  }
>() {}

/** One process (embedded SQLite): its budgets are its own, nothing to tell. */
export const local = Layer.succeed(BudgetSettingsSync, { publish: () => Effect.void })

/** Instances on one PostgreSQL database (see `Topology`): budgets held together. */
export const shared = Layer.scoped(
  BudgetSettingsSync,
  Effect.gen(function* () {
    const coordination = yield* CoordinationStore
    const budgets = yield* UpstreamBudgets
    const me = yield* runnerId
    const poll = yield* Config.duration("CLUSTER_BUDGET_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(250)))
    const notifications = yield* Notifications
    const { renewEvery, settleEvery, lease } = yield* ClusterGate.settingsConfig
    const leaseMs = Duration.toMillis(lease)

    // ---- shares of the ceiling
    const share = (key: UpstreamKey) =>
      Effect.gen(function* () {
        const budget = budgets[key]
        const gate = `upstream:${key}`
        // A call that has to wait pokes the renewal, so an idle instance gets a share at once.
        const poke = yield* Queue.sliding<void>(1)
        budget.onDemand(() => void Queue.unsafeOffer(poke, undefined))
        yield* Effect.addFinalizer(() => Effect.sync(() => budget.onDemand(undefined)))
        let current = -1
        let settled = false
        const renew = Effect.gen(function* () {
          const { ceiling } = yield* budget.snapshot
          const result = yield* coordination.renewClaim(gate, me, ceiling, budget.inFlight(), budget.demand(), leaseMs)
          settled = result.settled
          if (result.target !== current) {
            current = result.target
            yield* budget.update({ share: result.target })
          }
        }).pipe(
          Effect.timeout("5 seconds"),
          // A failed renewal keeps the current share; the lease covers a few missed renewals.
          Effect.catchAll((error) => Effect.logWarning(`could not renew the share of upstream ${key}: ${String(error)}`))
        )
        // An idle budget (no share, nothing in flight or waiting) has nothing to renew: a zero claim
        // counts for no one, and its first waiting call pokes. Renewing the four upstreams every
        // 250 ms regardless was most of an idle instance's statements.
        const idle = () => settled && current === 0 && budget.inFlight() === 0 && budget.demand() === 0
        yield* Effect.suspend(() =>
          (idle() ? Queue.take(poke) : Effect.race(Effect.sleep(settled ? renewEvery : settleEvery), Queue.take(poke))).pipe(
            Effect.zipRight(renew)
          )
        ).pipe(Effect.forever, Effect.interruptible, Effect.forkScoped)
        yield* Effect.addFinalizer(() => Effect.ignore(coordination.dropClaim(gate, me)))
      })
    yield* Effect.forEach(upstreamKeys, share, { discard: true })

    // ---- cooldowns seen here → everyone
    yield* Effect.forEach(
      upstreamKeys,
      (key) =>
        Effect.flatMap(budgets[key].changes, (changes) =>
          changes.pipe(
            Stream.runForEach((change) =>
              change._tag === "Cooldown"
                ? coordination
                    .shareCooldown(key, change.until)
                    .pipe(Effect.zipRight(notifications.signal("upstreams")), Effect.catchAll((error) => Effect.logWarning(`could not share the cooldown of ${key}: ${error.message}`)))
                : Effect.void
            ),
            Effect.interruptible,
            Effect.forkScoped
          )
        ),
      { discard: true }
    )

    // ---- everyone's cooldowns and settings → here
    const applied = new Map<string, number>()
    const sync = Effect.gen(function* () {
      const now = Date.now()
      for (const row of yield* coordination.upstreamStates) {
        const key = upstreamKeys.find((k) => k === row.upstream)
        if (key === undefined) continue
        const budget = budgets[key]
        if (row.cooldownUntil > now) yield* budget.cooldown(row.cooldownUntil)
        if (row.settings !== undefined && row.settingsAt > (applied.get(key) ?? 0)) {
          applied.set(key, row.settingsAt)
          const settings = yield* Schema.decodeUnknown(StoredSettings)(row.settings).pipe(Effect.option)
          if (settings._tag === "None") continue
          const rate = settings.value.rate === null ? null : (Budget.parseRate(settings.value.rate) ?? null)
          yield* budget.update({ ceiling: settings.value.ceiling, adaptive: settings.value.adaptive, rate })
          yield* Effect.logInfo(`upstream ${key} budget changed (shared settings)`).pipe(
            Effect.annotateLogs({ upstream: key, ...settings.value })
          )
        }
      }
    }).pipe(Effect.catchAll((error) => Effect.logWarning(`could not read shared upstream budgets: ${error.message}`)))
    const syncing = yield* readOnWake(notifications, "upstreams", sync, poll).pipe(Effect.interruptible, Effect.forkScoped)
    yield* Effect.addFinalizer(() => Fiber.interrupt(syncing))

    return {
      publish: (key) =>
        Effect.gen(function* () {
          const snap = yield* budgets[key].snapshot
          const at = Date.now()
          // Applied here already; don't apply it again when it comes back from the table.
          applied.set(key, at)
          const settings = { ceiling: snap.ceiling, adaptive: snap.adaptive, rate: snap.rate === undefined ? null : Budget.formatRate(snap.rate) }
          yield* coordination.publishUpstreamSettings(key, JSON.stringify(settings), at)
          yield* notifications.signal("upstreams")
        })
    }
  })
)
