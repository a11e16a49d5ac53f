/** The market-data API: stock screens by trigger key (`GET /screens/{triggerKey}?limit=N`). */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Schema } from "effect"
import { ScreenedStock } from "../domain/Kinds.js"
import type { TaskError } from "../engine/Errors.js"
import { jsonCall } from "./http.js"
import { clientForCalls, spanWhen, tracingOn } from "./tracing.js"
import { UpstreamConfig } from "./UpstreamConfig.js"

/** One stock of a screen (the schema is the contract's, in `domain/`). */
export { ScreenedStock }

const ScreenResponse = Schema.Struct({ stocks: Schema.Array(ScreenedStock) })
const screenCall = jsonCall(ScreenResponse)

export class MarketClient extends Context.Tag("parallel-processor/MarketClient")<
  MarketClient,
  { readonly screen: (triggerKey: string, limit: number) => Effect.Effect<ReadonlyArray<ScreenedStock>, TaskError> }
>() {
  static readonly layer: Layer.Layer<MarketClient, never, HttpClient.HttpClient | UpstreamConfig> = Layer.effect(
    MarketClient,
    Effect.gen(function* () {
      const client = yield* Effect.flatMap(HttpClient.HttpClient, clientForCalls)
      const { marketUrl } = yield* UpstreamConfig
      const span = spanWhen(yield* tracingOn, "MarketClient.screen")
      return {
        screen: (triggerKey, limit) =>
          screenCall(
            client,
            HttpClientRequest.get(`${marketUrl}/screens/${encodeURIComponent(triggerKey)}`).pipe(
              HttpClientRequest.setUrlParam("limit", String(limit))
            ),
            `market screen ${triggerKey}`
          ).pipe(
            Effect.map((r) => r.stocks),
            span
          )
      }
    })
  )
}
