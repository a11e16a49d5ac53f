/**
 * Post-generation processor: writes forum posts with the LLM, 2 at a time with a 120 s timeout per
 * attempt (generation is slow), each call admitted by the LLM's budget and then its breaker. The chat messages are built from the
 * request's persona, stock, trigger and prompt.
 */
import { Context, Effect, Layer } from "effect"
import { type GeneratedPost, PostRequest } from "../domain/Kinds.js"
import { CircuitBreakerRegistry } from "../engine/CircuitBreakerRegistry.js"
import { UpstreamBudgets } from "../upstream/Budgets.js"
import { LlmClient, type ChatMessage } from "../upstream/Llm.js"
import * as Processor from "./Processor.js"

/** The input item and the result value (their schemas are the contract's, in `domain/`). */
export { type GeneratedPost, PostRequest }

const defaultPersona =
  "你是一位在台灣股票論壇上發文的投資達人，語氣親切、觀點清楚，會提醒讀者投資有風險。"

/** The chat messages for one request. Exported so it can be checked without an LLM. */
export const messagesFor = (request: PostRequest): ReadonlyArray<ChatMessage> => {
  const stock = request.stockName === undefined ? request.stockCode : `${request.stockName}（${request.stockCode}）`
  const lines = [
    `請為股票 ${stock} 寫一篇論壇貼文，150 字以內，使用繁體中文。`,
    ...(request.trigger === undefined ? [] : [`觸發原因：${request.trigger}`]),
    ...(request.prompt === undefined ? [] : [request.prompt])
  ]
  return [
    { role: "system", content: request.persona ?? defaultPersona },
    { role: "user", content: lines.join("\n") }
  ]
}

export class PostGenerationProcessor extends Context.Tag("parallel-processor/PostGenerationProcessor")<
  PostGenerationProcessor,
  Processor.Processor<PostRequest, GeneratedPost>
>() {
  static readonly layer = Layer.effect(
    PostGenerationProcessor,
    Effect.gen(function* () {
      const llm = yield* LlmClient
      const breaker = yield* (yield* CircuitBreakerRegistry).get("llm")
      const budget = (yield* UpstreamBudgets).llm
      return yield* Processor.make<PostRequest, GeneratedPost>({
        name: "post_generation",
        envPrefix: "POST_GENERATION",
        defaults: { maxConcurrent: 2, timeoutSeconds: 120 },
        idOf: (request, index) => request.id ?? `${request.kolSerial}-${request.stockCode}-${index}`,
        task: (request, attempt) =>
          attempt.guard({ budget, breaker })(llm.complete({ messages: messagesFor(request), temperature: 0.8, maxTokens: 400 }))
      })
    })
  )
}
