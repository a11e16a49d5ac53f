/**
 * One JSON call to an upstream, classified: transport failures, non-2xx answers and bodies that fail
 * their schema all come out as the engine's tagged errors. The fiber's interruption (attempt timeout,
 * cancel) aborts the underlying fetch, so the socket is closed.
 *
 * `jsonCall(schema)` compiles the body's decoder once, for a client to keep per endpoint, and matches
 * the outcome in one step rather than a chain of catch/flatMap layers: this runs once per upstream
 * call, thousands of times a second in a fast batch.
 */
import { type HttpClient, type HttpClientError, type HttpClientRequest } from "@effect/platform"
import { Clock, Effect, Schema } from "effect"
import { InvalidResponse, type TaskError } from "../engine/Errors.js"
import { fromRequestError, fromStatus } from "./classify.js"

export type JsonCall<A> = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  what: string
) => Effect.Effect<A, TaskError>

// Only the RequestError cases say why; a ResponseError here is a body read failure: a dropped connection.
const requestFailed = (error: HttpClientError.HttpClientError, what: string) =>
  Effect.fail(fromRequestError(error._tag === "RequestError" ? error : { reason: "Transport" }, what))

export const jsonCall = <A, I>(schema: Schema.Schema<A, I>): JsonCall<A> => {
  const decode = Schema.decodeUnknown(schema)
  return (client, request, what) =>
    Effect.matchEffect(client.execute(request), {
      onFailure: (error) => requestFailed(error, what),
      onSuccess: (response) =>
        response.status >= 200 && response.status < 300
          ? Effect.matchEffect(response.json, {
              onFailure: () => Effect.fail(new InvalidResponse({ message: `${what}: body is not JSON` })),
              onSuccess: (body) =>
                Effect.mapError(
                  decode(body),
                  (error) => new InvalidResponse({ message: `${what}: unexpected response body: ${error.message.split("\n")[0] ?? ""}` })
                )
            })
          : Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.fail(fromStatus(response.status, (name) => response.headers[name], what, now))
            )
    })
}
