/**
 * The run-time settings routes: the processors' limits (running batches pick a change up), the
 * upstream budgets (shared with the other instances) and their sampled history, and the circuit breakers.
 */
import { HttpApiBuilder } from "@effect/platform"
import { Duration, Effect } from "effect"
import { processorNames, type ProcessorName } from "../../domain/Operations.js"
import * as Budget from "../../engine/Budget.js"
import { CircuitBreakerRegistry } from "../../engine/CircuitBreakerRegistry.js"
import { BudgetSettingsSync } from "../../jobs/ClusterBudgets.js"
import { IntradayTriggersProcessor } from "../../processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../../processors/Interactions.js"
import { PostGenerationProcessor } from "../../processors/PostGeneration.js"
import type * as Processor from "../../processors/Processor.js"
import { isUpstreamKey, UpstreamBudgets, upstreamKeys } from "../../upstream/Budgets.js"
import { Api, NotFound } from "../Api.js"
import { UpstreamHistory } from "../UpstreamHistory.js"
import { storeUnavailable } from "./DomainErrors.js"

const upstreamView = (snap: Budget.Snapshot) => ({
  key: snap.key,
  ceiling: snap.ceiling,
  ...(snap.share === undefined ? {} : { share: snap.share }),
  limit: snap.limit,
  inFlight: snap.inFlight,
  waitingItems: snap.waiting,
  waitingJobs: snap.waitingTenants,
  algorithm: snap.algorithm,
  adaptive: snap.adaptive,
  throttled: snap.throttled,
  cooldowns: snap.cooldowns,
  ...(snap.cooldownUntil === undefined ? {} : { cooldownUntil: new Date(snap.cooldownUntil).toISOString() }),
  ...(snap.rate === undefined ? {} : { rate: Budget.formatRate(snap.rate) })
})

export const ProcessorsLive = HttpApiBuilder.group(Api, "processors", (handlers) =>
  Effect.gen(function* () {
    const byName: Record<ProcessorName, Pick<Processor.Processor<unknown, unknown>, "limits" | "maxConcurrent" | "attemptTimeout">> = {
      interactions: yield* InteractionsProcessor,
      post_generation: yield* PostGenerationProcessor,
      intraday_triggers: yield* IntradayTriggersProcessor
    }
    const registry = yield* CircuitBreakerRegistry
    const budgets = yield* UpstreamBudgets
    const budgetSync = yield* BudgetSettingsSync
    const history = yield* UpstreamHistory
    const describe = (name: ProcessorName) => Effect.map(byName[name].limits, (limits) => ({ name, ...limits }))
    return handlers
      .handle("list", () => Effect.forEach(processorNames, describe))
      .handle("update", ({ path, payload }) =>
        Effect.gen(function* () {
          const name = processorNames.find((n) => n === path.name)
          if (name === undefined) {
            return yield* new NotFound({ message: `no processor "${path.name}"; one of ${processorNames.join(", ")}` })
          }
          const processor = byName[name]
          if (payload.maxConcurrent !== undefined) yield* processor.maxConcurrent.set(payload.maxConcurrent)
          if (payload.timeoutSeconds !== undefined) yield* processor.attemptTimeout.set(Duration.seconds(payload.timeoutSeconds))
          yield* Effect.logInfo(`processor ${name} limits changed`).pipe(Effect.annotateLogs({ ...payload }))
          return yield* describe(name)
        })
      )
      .handle("upstreams", () => Effect.forEach(upstreamKeys, (key) => Effect.map(budgets[key].snapshot, upstreamView)))
      .handle("upstreamHistory", () => history.view)
      .handle("updateUpstream", ({ path, payload }) =>
        Effect.gen(function* () {
          const key = path.key
          if (!isUpstreamKey(key)) {
            return yield* new NotFound({ message: `no upstream "${key}"; one of ${upstreamKeys.join(", ")}` })
          }
          const budget = budgets[key]
          yield* budget.update({
            ...(payload.ceiling === undefined ? {} : { ceiling: payload.ceiling }),
            ...(payload.adaptive === undefined ? {} : { adaptive: payload.adaptive }),
            ...(payload.rate === undefined ? {} : { rate: payload.rate })
          })
          // With several instances: every other instance applies it too.
          yield* budgetSync.publish(key).pipe(Effect.catchTag("StoreError", storeUnavailable))
          yield* Effect.logInfo(`upstream ${key} budget changed`).pipe(Effect.annotateLogs({ upstream: key, ...payload }))
          return upstreamView(yield* budget.snapshot)
        })
      )
      .handle("breakers", () =>
        Effect.map(registry.snapshots, (all) =>
          all.map((b) => ({
            key: b.key,
            status: b.status,
            since: new Date(b.since).toISOString(),
            probesInFlight: b.probesInFlight,
            ...(b.retryAfterMs === undefined ? {} : { retryAfterMs: b.retryAfterMs })
          }))
        )
      )
  })
)
