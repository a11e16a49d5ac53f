/**
 * Requests that reach the HTTP server before the service's handler is attached. `NodeHttpServer`
 * listens as soon as its layer is built, and the HttpApi app is attached to the server's `request`
 * event only once every layer after it is built (handlers, the dashboard's files, the history
 * sampler): a request in that window had no listener at all and was never answered — its client
 * waited until its own timeout. Nobody connects that early on a cold start, but after an in-process
 * restart (a cluster runner that lost its shards) clients are polling, and one was seen waiting
 * minutes. Those requests now get 503 with `Retry-After` and the connection closed — as do requests
 * on a kept-alive connection after shutdown has detached the handler.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http"

const body = JSON.stringify({ _tag: "Unavailable", message: "the service is starting or stopping; try again in a moment" })

/** Answers 503 to every request while this is the server's only `request` listener (before the app is attached, after it is detached). */
export const answerWhileStarting = (server: Server): void => {
  const guard = (_request: IncomingMessage, response: ServerResponse) => {
    if (server.listenerCount("request") > 1) return
    response.writeHead(503, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "retry-after": "1",
      connection: "close"
    })
    response.end(body)
  }
  server.on("request", guard)
}
