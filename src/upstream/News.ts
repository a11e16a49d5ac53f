/** A Serper-style news search (`POST /news {q, num}` with `X-API-KEY`). */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { NewsItem } from "../domain/Kinds.js"
import type { TaskError } from "../engine/Errors.js"
import { jsonCall } from "./http.js"
import { clientForCalls, spanWhen, tracingOn } from "./tracing.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

/** One search hit (the schema is the contract's, in `domain/`). */
export { NewsItem }

const NewsResponse = Schema.Struct({ news: Schema.Array(NewsItem) })
const searchCall = jsonCall(NewsResponse)

export class NewsClient extends Context.Tag("parallel-processor/NewsClient")<
  NewsClient,
  { readonly search: (query: string, num: number) => Effect.Effect<ReadonlyArray<NewsItem>, TaskError> }
>() {
  static readonly layer: Layer.Layer<NewsClient, never, HttpClient.HttpClient | UpstreamConfig> = Layer.effect(
    NewsClient,
    Effect.gen(function* () {
      const client = yield* Effect.flatMap(HttpClient.HttpClient, clientForCalls)
      const { newsUrl, newsApiKey } = yield* UpstreamConfig
      const span = spanWhen(yield* tracingOn, "NewsClient.search")
      return {
        search: (query, num) => {
          const base = HttpClientRequest.post(`${newsUrl}/news`).pipe(HttpClientRequest.bodyUnsafeJson({ q: query, num }))
          const request = Option.match(newsApiKey, {
            onNone: () => base,
            onSome: (key) => HttpClientRequest.setHeader(base, "x-api-key", Redacted.value(key))
          })
          return searchCall(client, request, "news search").pipe(
            Effect.map((r) => r.news),
            span
          )
        }
      }
    })
  )
}
