/** A Serper-style news search (`POST /news {q, num}` with `X-API-KEY`). */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { NewsItem } from "../domain/Kinds.js"
import type { TaskError } from "../engine/Errors.js"
import { callJson } from "./http.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

/** One search hit (the schema is the contract's, in `domain/`). */
export { NewsItem }

const NewsResponse = Schema.Struct({ news: Schema.Array(NewsItem) })

export class NewsClient extends Context.Tag("parallel-processor/NewsClient")<
  NewsClient,
  { readonly search: (query: string, num: number) => Effect.Effect<ReadonlyArray<NewsItem>, TaskError> }
>() {
  static readonly layer: Layer.Layer<NewsClient, never, HttpClient.HttpClient | UpstreamConfig> = Layer.effect(
    NewsClient,
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const { newsUrl, newsApiKey } = yield* UpstreamConfig
      return {
        search: (query, num) => {
          const base = HttpClientRequest.post(`${newsUrl}/news`).pipe(HttpClientRequest.bodyUnsafeJson({ q: query, num }))
          const request = Option.match(newsApiKey, {
            onNone: () => base,
            onSome: (key) => HttpClientRequest.setHeader(base, "x-api-key", Redacted.value(key))
          })
          return callJson(client, request, NewsResponse, "news search").pipe(
            Effect.map((r) => r.news),
            Effect.withSpan("NewsClient.search", { captureStackTrace: false })
          )
        }
      }
    })
  )
}
