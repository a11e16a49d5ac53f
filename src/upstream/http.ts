/**
 * One JSON call to an upstream, classified: transport failures, non-2xx answers and bodies that fail
 * their schema all come out as the engine's tagged errors. The fiber's interruption (attempt timeout,
 * cancel) aborts the underlying fetch, so the socket is closed.
 */
import { HttpClient, type HttpClientRequest } from "@effect/platform"
import { Clock, Effect, Schema } from "effect"
import { InvalidResponse, type TaskError } from "../engine/Errors.js"
import { fromRequestError, fromStatus } from "./classify.js"

export const callJson = <A, I>(
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  schema: Schema.Schema<A, I>,
  what: string
): Effect.Effect<A, TaskError> =>
  client.execute(request).pipe(
    Effect.catchTag("RequestError", (error) => Effect.fail(fromRequestError(error, what))),
    // Only the ResponseError cases remain (body read failures): treat as a dropped connection.
    Effect.catchTag("ResponseError", () => Effect.fail(fromRequestError({ reason: "Transport" }, what))),
    Effect.flatMap((response) => {
      if (response.status >= 200 && response.status < 300) {
        return response.json.pipe(
          Effect.catchAll(() => Effect.fail(new InvalidResponse({ message: `${what}: body is not JSON` }))),
          Effect.flatMap((body) =>
            Schema.decodeUnknown(schema)(body).pipe(
              Effect.mapError(
                (error) => new InvalidResponse({ message: `${what}: unexpected response body: ${error.message.split("\n")[0] ?? ""}` })
              )
            )
          )
        )
      }
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.fail(fromStatus(response.status, (name) => response.headers[name], what, now))
      )
    })
  )
