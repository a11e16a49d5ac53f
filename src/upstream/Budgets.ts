/**
 * The service's four upstream budgets (`forum`, `llm`, `market`, `news`), one per upstream for the
 * whole process — every job, every processor and the forum login share them. Read from the
 * environment: `<UPSTREAM>_MAX_CONCURRENT` (the ceiling; defaults forum 5, llm 3, market 5, news 5,
 * the upper end of the guide's recommendations), `<UPSTREAM>_ADAPTIVE` (`off` pins the limit at the
 * ceiling), `<UPSTREAM>_RATE_LIMIT` (e.g. `600/minute`) and `BUDGET_ALGORITHM` (`gradient`, the
 * default, or `aimd`). An invalid value keeps the default for that setting alone, with a warning.
 */
import { Config, Context, Effect, Layer, Option } from "effect"
import * as Budget from "../engine/Budget.js"
import * as LimitAlgorithm from "../engine/LimitAlgorithm.js"

export const upstreamKeys = ["forum", "llm", "market", "news"] as const
export type UpstreamKey = (typeof upstreamKeys)[number]

export const defaultCeilings: Readonly<Record<UpstreamKey, number>> = { forum: 5, llm: 3, market: 5, news: 5 }

/** Bounds of a ceiling, from the environment or `PATCH /api/upstreams/{key}`. */
export const MAX_CEILING = 256

export class UpstreamBudgets extends Context.Tag("parallel-processor/UpstreamBudgets")<
  UpstreamBudgets,
  Readonly<Record<UpstreamKey, Budget.Budget>>
>() {
  /** From the environment (see the module header). */
  static readonly layer = Layer.scoped(
    UpstreamBudgets,
    Effect.gen(function* () {
      const warnInvalid = <A>(config: Config.Config<A>, name: string, fallback: A) =>
        config.pipe(
          Effect.tapError((error) => Effect.logWarning(`ignoring invalid ${name}: ${error.message}`)),
          Effect.orElseSucceed(() => fallback)
        )
      const algorithmName = yield* warnInvalid(
        Config.literal("gradient", "aimd")("BUDGET_ALGORITHM").pipe(Config.withDefault("gradient" as const)),
        "BUDGET_ALGORITHM",
        "gradient" as const
      )
      const make = (key: UpstreamKey) =>
        Effect.gen(function* () {
          const prefix = key.toUpperCase()
          const ceiling = yield* warnInvalid(
            Config.integer(`${prefix}_MAX_CONCURRENT`).pipe(
              Config.validate({ message: `must be between 1 and ${MAX_CEILING}`, validation: (n) => n >= 1 && n <= MAX_CEILING }),
              Config.withDefault(defaultCeilings[key])
            ),
            `${prefix}_MAX_CONCURRENT`,
            defaultCeilings[key]
          )
          const adaptive = yield* warnInvalid(Config.boolean(`${prefix}_ADAPTIVE`).pipe(Config.withDefault(true)), `${prefix}_ADAPTIVE`, true)
          const rawRate = yield* warnInvalid(Config.option(Config.string(`${prefix}_RATE_LIMIT`)), `${prefix}_RATE_LIMIT`, Option.none())
          const rate = Option.isSome(rawRate) ? Budget.parseRate(rawRate.value) : undefined
          if (Option.isSome(rawRate) && rate === undefined) {
            yield* Effect.logWarning(`ignoring invalid ${prefix}_RATE_LIMIT "${rawRate.value}": expected e.g. 600/minute or 10/second`)
          }
          const algorithm = LimitAlgorithm.byName(algorithmName) ?? LimitAlgorithm.gradient()
          return yield* Budget.make({ key, ceiling, adaptive, algorithm, ...(rate === undefined ? {} : { rate }) })
        })
      return {
        forum: yield* make("forum"),
        llm: yield* make("llm"),
        market: yield* make("market"),
        news: yield* make("news")
      }
    })
  )
}

export const isUpstreamKey = (key: string): key is UpstreamKey => upstreamKeys.some((k) => k === key)
