/**
 * A request that reaches the HTTP server before the service's handler is attached (or after shutdown
 * detached it) is answered 503 + Retry-After with the connection closed, instead of never (Starting.ts).
 * A real Node server on 127.0.0.1, port 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { answerWhileStarting } from "../src/http/Starting.js"

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) })
    return { status: response.status, retryAfter: response.headers.get("retry-after"), connection: response.headers.get("connection"), body: await response.text() }
  })

describe("requests before the handler is attached", () => {
  it.scoped("get 503 + Retry-After until the app listens, then only the app answers; again 503 once it is detached", () =>
    Effect.gen(function* () {
      const server = createServer()
      answerWhileStarting(server)
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.closeAllConnections()).pipe(Effect.zipRight(Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        })))
      )
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/jobs/x`

      const early = yield* get(url)
      expect(early).toMatchObject({ status: 503, retryAfter: "1", connection: "close" })
      expect(JSON.parse(early.body)).toMatchObject({ _tag: "Unavailable" })

      const app = (_request: IncomingMessage, response: ServerResponse) => {
        response.writeHead(200, { "content-type": "text/plain" })
        response.end("app")
      }
      server.on("request", app)
      expect(yield* get(url)).toMatchObject({ status: 200, body: "app" })

      server.off("request", app)
      expect((yield* get(url)).status).toBe(503)
    }))
})
