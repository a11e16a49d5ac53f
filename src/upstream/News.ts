/** A Serper-style news search (`POST /news {q, num}` with `X-API-KEY`). */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import type { TaskError } from "../engine/Errors.js"
import { callJson } from "./http.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

export const NewsItem = Schema.Struct({
  title: Schema.String,
  link: Schema.String,
  snippet: Schema.optionalWith(Schema.String, { exact: true }),
  date: Schema.optionalWith(Schema.String, { exact: true }),
  source: Schema.optionalWith(Schema.String, { exact: true })
})
export type NewsItem = typeof NewsItem.Type

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
