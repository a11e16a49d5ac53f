/** The market-data API: stock screens by trigger key (`GET /screens/{triggerKey}?limit=N`). */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Schema } from "effect"
import { ScreenedStock } from "../domain/Kinds.js"
import type { TaskError } from "../engine/Errors.js"
import { callJson } from "./http.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

/** One stock of a screen (the schema is the contract's, in `domain/`). */
export { ScreenedStock }

const ScreenResponse = Schema.Struct({ stocks: Schema.Array(ScreenedStock) })

export class MarketClient extends Context.Tag("parallel-processor/MarketClient")<
  MarketClient,
  { readonly screen: (triggerKey: string, limit: number) => Effect.Effect<ReadonlyArray<ScreenedStock>, TaskError> }
>() {
  static readonly layer: Layer.Layer<MarketClient, never, HttpClient.HttpClient | UpstreamConfig> = Layer.effect(
    MarketClient,
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const { marketUrl } = yield* UpstreamConfig
      return {
        screen: (triggerKey, limit) =>
          callJson(
            client,
            HttpClientRequest.get(`${marketUrl}/screens/${encodeURIComponent(triggerKey)}`).pipe(
              HttpClientRequest.setUrlParam("limit", String(limit))
            ),
            ScreenResponse,
            `market screen ${triggerKey}`
          ).pipe(
            Effect.map((r) => r.stocks),
            Effect.withSpan("MarketClient.screen", { captureStackTrace: false })
          )
      }
    })
  )
}
