/**
 * The real clients and processors wired to a sandbox on 127.0.0.1 (port 0) over real sockets, for
 * integration tests. Each `world` is fresh: its own sandbox, breakers and token cache.
 */
import { FetchHttpClient } from "@effect/platform"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import type * as CircuitBreaker from "../../src/engine/CircuitBreaker.js"
import * as CircuitBreakerRegistry from "../../src/engine/CircuitBreakerRegistry.js"
import { IntradayTriggersProcessor } from "../../src/processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../../src/processors/Interactions.js"
import { PostGenerationProcessor } from "../../src/processors/PostGeneration.js"
import * as Sandbox from "../../src/sandbox/Sandbox.js"
import { UpstreamBudgets } from "../../src/upstream/Budgets.js"
import { ForumClient } from "../../src/upstream/Forum.js"
import { KolCredentials } from "../../src/upstream/KolCredentials.js"
import { LlmClient } from "../../src/upstream/Llm.js"
import { MarketClient } from "../../src/upstream/Market.js"
import { NewsClient } from "../../src/upstream/News.js"
import { UpstreamConfig } from "../../src/upstream/UpstreamConfig.js"

export const credentials = KolCredentials.fromRecord({
  "101": { email: "kol101@example.com", password: Redacted.make("pw-101") },
  "102": { email: "kol102@example.com", password: Redacted.make("pw-102") },
  "103": { email: "kol103@example.com", password: Redacted.make("wrong") }
})

export interface WorldOptions {
  readonly sandbox?: Sandbox.SandboxOptions
  readonly breakers?: Partial<CircuitBreaker.Settings>
  readonly env?: Readonly<Record<string, string>>
}

export const world = (options: WorldOptions = {}) => {
  const upstreamConfig = Layer.unwrapEffect(
    Effect.map(Sandbox.Sandbox, (sandbox) =>
      UpstreamConfig.allAt(sandbox.url, {
        llmApiKey: Redacted.make("sk-test-llm-key"),
        newsApiKey: Redacted.make("news-test-key")
      })
    )
  )
  const clients = Layer.mergeAll(ForumClient.layer, LlmClient.layer, MarketClient.layer, NewsClient.layer).pipe(
    Layer.provide(Layer.mergeAll(FetchHttpClient.layer, upstreamConfig, credentials)),
    Layer.provideMerge(UpstreamBudgets.layer)
  )
  const registry = CircuitBreakerRegistry.layerWith(options.breakers ?? {})
  const processors = Layer.mergeAll(
    InteractionsProcessor.layer,
    PostGenerationProcessor.layer,
    IntradayTriggersProcessor.layer
  ).pipe(Layer.provideMerge(clients), Layer.provideMerge(registry))
  return processors.pipe(
    Layer.provideMerge(Sandbox.layer({ seed: 7, ...options.sandbox })),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(options.env ?? {})))))
  )
}
