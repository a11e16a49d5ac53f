/**
 * Intraday-trigger processor: for each trigger config, runs the market screen, then searches news
 * for the trigger's keywords and the top stocks; 3 at a time with a 30 s timeout per attempt. The two
 * calls of one item go to different upstreams, so each goes through its own upstream's budget and
 * breaker (`AttemptContext.guard`).
 */
import { Context, Effect, Layer } from "effect"
import { type ScreenedStock, TriggerConfig, TriggerResult } from "../domain/Kinds.js"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { UpstreamBudgets } from "../upstream/Budgets.js"
import { MarketClient } from "../upstream/Market.js"
import { NewsClient } from "../upstream/News.js"
import * as Processor from "./Processor.js"

/** The input item and the result value (their schemas are the contract's, in `domain/`). */
export { TriggerConfig, TriggerResult }

/** News keywords used when a trigger config names none. */
export const defaultKeywords: Readonly<Record<string, ReadonlyArray<string>>> = {
  limit_up: ["漲停"],
  limit_down: ["跌停"],
  volume_surge: ["爆量"],
  gap_up: ["跳空上漲"],
  gap_down: ["跳空下跌"]
}

const TOP_STOCKS_IN_QUERY = 3
const NEWS_PER_TRIGGER = 10

export const newsQuery = (config: TriggerConfig, stocks: ReadonlyArray<ScreenedStock>): string =>
  [
    ...(config.newsKeywords ?? defaultKeywords[config.triggerKey] ?? [config.triggerKey]),
    ...stocks.slice(0, TOP_STOCKS_IN_QUERY).map((s) => s.name)
  ].join(" ")

export class IntradayTriggersProcessor extends Context.Tag("parallel-processor/IntradayTriggersProcessor")<
  IntradayTriggersProcessor,
  Processor.Processor<TriggerConfig, TriggerResult>
>() {
  static readonly layer = Layer.effect(
    IntradayTriggersProcessor,
    Effect.gen(function* () {
      const market = yield* MarketClient
      const news = yield* NewsClient
      const registry = yield* CircuitBreakerRegistry
      const marketBreaker = yield* registry.get("market")
      const newsBreaker = yield* registry.get("news")
      const budgets = yield* UpstreamBudgets
      const marketUpstream = { budget: budgets.market, breaker: marketBreaker }
      const newsUpstream = { budget: budgets.news, breaker: newsBreaker }
      return yield* Processor.make<TriggerConfig, TriggerResult>({
        name: "intraday_triggers",
        envPrefix: "INTRADAY",
        defaults: { maxConcurrent: 3, timeoutSeconds: 30 },
        idOf: (config, index) => `${config.triggerKey}-${index}`,
        task: (config, attempt) =>
          Effect.gen(function* () {
            const stocks = yield* attempt.guard(marketUpstream)(market.screen(config.triggerKey, config.limit ?? 10))
            const items = yield* attempt.guard(newsUpstream)(news.search(newsQuery(config, stocks), NEWS_PER_TRIGGER))
            return { triggerKey: config.triggerKey, stocks, news: items }
          })
      })
    })
  )
}
