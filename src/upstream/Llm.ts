/**
 * An OpenAI-compatible chat-completions client (`POST {LLM_BASE_URL}/chat/completions`): the same
 * request works against OpenAI, vLLM, Ollama and llama.cpp servers. Only the fields every one of
 * them returns are read: `choices[0].message.content`, `model` and, when present, `usage`.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Schema } from "effect"
import type { GeneratedPost } from "../domain/Kinds.js"
import { InvalidResponse, type TaskError } from "../engine/Errors.js"
import { jsonCall } from "./http.js"
import { clientForCalls, spanWhen, tracingOn } from "./tracing.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

const Usage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.Number
})

const ChatCompletion = Schema.Struct({
  model: Schema.optionalWith(Schema.String, { exact: true }),
  choices: Schema.Array(
    Schema.Struct({ message: Schema.Struct({ content: Schema.NullOr(Schema.String) }) })
  ),
  usage: Schema.optionalWith(Schema.NullOr(Usage), { exact: true })
})
const completionCall = jsonCall(ChatCompletion)

/** A finished completion: the post-generation kind's result value (its schema is in `domain/`). */
export type Completion = GeneratedPost

export interface ChatRequest {
  readonly messages: ReadonlyArray<ChatMessage>
  readonly temperature?: number
  readonly maxTokens?: number
}

export class LlmClient extends Context.Tag("parallel-processor/LlmClient")<
  LlmClient,
  { readonly complete: (request: ChatRequest) => Effect.Effect<Completion, TaskError> }
>() {
  static readonly layer: Layer.Layer<LlmClient, never, HttpClient.HttpClient | UpstreamConfig> = Layer.effect(
    LlmClient,
    Effect.gen(function* () {
      const client = yield* Effect.flatMap(HttpClient.HttpClient, clientForCalls)
      const { llmBaseUrl, llmApiKey, llmModel } = yield* UpstreamConfig
      const span = spanWhen(yield* tracingOn, "LlmClient.complete")
      const complete = (request: ChatRequest): Effect.Effect<Completion, TaskError> => {
        const body = {
          model: llmModel,
          messages: request.messages,
          ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          ...(request.maxTokens === undefined ? {} : { max_tokens: request.maxTokens })
        }
        const base = HttpClientRequest.post(`${llmBaseUrl}/chat/completions`).pipe(HttpClientRequest.bodyUnsafeJson(body))
        const http = Option.match(llmApiKey, {
          onNone: () => base,
          onSome: (key) => HttpClientRequest.bearerToken(base, key)
        })
        return completionCall(client, http, "llm chat completion").pipe(
          Effect.flatMap((answer) => {
            const content = answer.choices[0]?.message.content
            if (content === undefined || content === null || content.trim() === "") {
              return Effect.fail(new InvalidResponse({ message: "llm chat completion: no content in choices[0]" }))
            }
            const usage = answer.usage
            return Effect.succeed({
              content,
              model: answer.model ?? llmModel,
              usage:
                usage === undefined || usage === null
                  ? null
                  : {
                      promptTokens: usage.prompt_tokens,
                      completionTokens: usage.completion_tokens,
                      totalTokens: usage.total_tokens
                    }
            })
          }),
          span
        )
      }
      return { complete }
    })
  )
}
