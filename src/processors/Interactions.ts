/**
 * Interactions processor: fetches views, likes, comments and shares for published articles, 3 at a
 * time with a 30 s timeout per attempt (the guide's defaults), each call admitted by the forum's
 * budget and then its breaker (the account's token is fetched first, outside the budget's permit).
 * Accounts listed in `INTERACTIONS_SKIP_KOLS` (comma-separated serials) are skipped, not called.
 */
import { Config, Context, Effect, Layer } from "effect"
import { type Interactions, TrackedPost } from "../domain/Kinds.js"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { Skipped } from "../engine/Errors.js"
import { UpstreamBudgets } from "../upstream/Budgets.js"
import { ForumClient } from "../upstream/Forum.js"
import * as Processor from "./Processor.js"

/** The input item (its schema is the contract's, in `domain/`). */
export { TrackedPost }

export const skipListConfig = Config.string("INTERACTIONS_SKIP_KOLS").pipe(
  Config.withDefault(""),
  Config.map((raw) => new Set(raw.split(",").map((s) => s.trim()).filter((s) => s !== "")))
)

export class InteractionsProcessor extends Context.Tag("parallel-processor/InteractionsProcessor")<
  InteractionsProcessor,
  Processor.Processor<TrackedPost, Interactions>
>() {
  static readonly layer = Layer.effect(
    InteractionsProcessor,
    Effect.gen(function* () {
      const forum = yield* ForumClient
      const registry = yield* CircuitBreakerRegistry
      const breaker = yield* registry.get("forum")
      const budget = (yield* UpstreamBudgets).forum
      const skip = yield* Effect.orElseSucceed(skipListConfig, () => new Set<string>())
      return yield* Processor.make<TrackedPost, Interactions>({
        name: "interactions",
        envPrefix: "INTERACTIONS",
        defaults: { maxConcurrent: 3, timeoutSeconds: 30 },
        idOf: (post) => post.postId,
        task: (post, attempt) =>
          skip.has(post.kolSerial)
            ? Effect.fail(new Skipped({ reason: `KOL ${post.kolSerial} is on INTERACTIONS_SKIP_KOLS` }))
            : forum.interactions(post.kolSerial, post.articleId, attempt.guard({ budget, breaker }))
      })
    })
  )
}
