/**
 * The upstreams' HttpClient (src/upstream/UndiciHttpClient.ts) against a real Node server on
 * 127.0.0.1, port 0: what the upstream clients rely on — status, headers, cookies, a JSON body both
 * ways, a body read twice, decode and transport errors as the platform's error types, and
 * interruption aborting the request on the wire (while waiting for headers and while reading the body).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as UndiciHttpClient from "../src/upstream/UndiciHttpClient.js"

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void

/** A server whose handler the test sets; `closed` completes when a request's socket closes early. */
const server = (handler: Handler) =>
  Effect.gen(function* () {
    const aborted = yield* Deferred.make<string>()
    const node = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => handler(request, Buffer.concat(chunks).toString("utf8"), response))
      response.on("close", () => {
        if (!response.writableFinished) Deferred.unsafeDone(aborted, Effect.succeed(request.url ?? ""))
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        node.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          node.closeAllConnections()
          node.close(() => resume(Effect.void))
        })
    )
    return { url: `http://127.0.0.1:${(node.address() as AddressInfo).port}`, aborted }
  })

const withClient = <A, E>(f: (http: HttpClient.HttpClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(HttpClient.HttpClient, f).pipe(Effect.provide(UndiciHttpClient.layer))

describe("UndiciHttpClient", () => {
  it.scopedLive("GET: status, headers, cookies, the JSON body; the body can be read again", () =>
    Effect.gen(function* () {
      const { url } = yield* server((request, _body, response) => {
        response.writeHead(201, { "content-type": "application/json", "x-seen": request.headers.authorization ?? "", "set-cookie": ["a=1", "b=2"] })
        response.end(JSON.stringify({ views: 7 }))
      })
      yield* withClient((http) =>
        Effect.gen(function* () {
          const response = yield* http.execute(HttpClientRequest.get(`${url}/x?q=1`).pipe(HttpClientRequest.bearerToken("tok")))
          expect(response.status).toBe(201)
          expect(response.headers["x-seen"]).toBe("Bearer tok")
          expect(response.headers["content-type"]).toBe("application/json")
          expect(Object.keys(response.cookies.cookies).sort()).toEqual(["a", "b"])
          expect(yield* response.json).toEqual({ views: 7 })
          expect(yield* response.text).toBe('{"views":7}')
          expect(new TextDecoder().decode(yield* response.arrayBuffer)).toBe('{"views":7}')
        })
      )
    }))

  it.scopedLive("POST: a JSON body and its content type reach the server; a streamed body too", () =>
    Effect.gen(function* () {
      const { url } = yield* server((request, body, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify({ method: request.method, type: request.headers["content-type"] ?? null, body }))
      })
      yield* withClient((http) =>
        Effect.gen(function* () {
          const json = yield* HttpClientRequest.post(`${url}/chat`).pipe(HttpClientRequest.bodyJson({ prompt: "你好" }))
          const answer = yield* Effect.flatMap(http.execute(json), (r) => r.json)
          expect(answer).toEqual({ method: "POST", type: "application/json", body: '{"prompt":"你好"}' })
          const streamed = HttpClientRequest.post(`${url}/s`).pipe(
            HttpClientRequest.bodyStream(Stream.make(new TextEncoder().encode("ab"), new TextEncoder().encode("cd")), { contentType: "text/plain" })
          )
          expect(yield* Effect.flatMap(http.execute(streamed), (r) => r.json)).toMatchObject({ body: "abcd", type: "text/plain" })
          const text = HttpClientRequest.post(`${url}/t`).pipe(HttpClientRequest.bodyText("plain", "text/plain"))
          expect(yield* Effect.flatMap(http.execute(text), (r) => r.json)).toMatchObject({ body: "plain" })
        })
      )
    }))

  it.scopedLive("the response as a stream", () =>
    Effect.gen(function* () {
      const { url } = yield* server((_request, _body, response) => {
        response.writeHead(200)
        response.write("one,")
        response.end("two")
      })
      const chunks = yield* withClient((http) => Stream.runCollect(http.execute(HttpClientRequest.get(url)).pipe(Effect.map((r) => r.stream), Stream.unwrap)))
      expect(Chunk.toReadonlyArray(chunks).map((c) => new TextDecoder().decode(c)).join("")).toBe("one,two")
    }))

  it.scopedLive("a body that is not JSON is a ResponseError (Decode); a refused connection a RequestError (Transport)", () =>
    Effect.gen(function* () {
      const { url } = yield* server((_request, _body, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.end("{not json")
      })
      const decode = yield* withClient((http) => Effect.flip(Effect.flatMap(http.execute(HttpClientRequest.get(url)), (r) => r.json)))
      expect(decode).toMatchObject({ _tag: "ResponseError", reason: "Decode" })
      // A port nothing listens on: the server's own, closed.
      const closed = yield* Effect.scoped(Effect.map(server(() => {}), (s) => s.url))
      const transport = yield* withClient((http) => Effect.flip(http.execute(HttpClientRequest.get(closed))))
      expect(transport).toMatchObject({ _tag: "RequestError", reason: "Transport" })
    }))

  it.scopedLive("interrupted while waiting for the answer: the request is aborted on the wire", () =>
    Effect.gen(function* () {
      const { url, aborted } = yield* server(() => {
        // Never answers.
      })
      yield* withClient((http) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(http.execute(HttpClientRequest.get(`${url}/slow`)))
          yield* Effect.sleep("50 millis")
          yield* Fiber.interrupt(fiber)
          // While the client (its agent) still lives: closing it would close the socket anyway.
          expect(yield* Deferred.await(aborted).pipe(Effect.timeout("5 seconds"))).toBe("/slow")
        })
      )
    }))

  it.scopedLive("interrupted while reading the body: the request is aborted on the wire", () =>
    Effect.gen(function* () {
      const { url, aborted } = yield* server((_request, _body, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.write('{"partial":')
      })
      yield* withClient((http) =>
        Effect.gen(function* () {
          const response = yield* http.execute(HttpClientRequest.get(`${url}/half`))
          const fiber = yield* Effect.fork(response.json)
          yield* Effect.sleep("50 millis")
          yield* Fiber.interrupt(fiber)
          expect(yield* Deferred.await(aborted).pipe(Effect.timeout("5 seconds"))).toBe("/half")
        })
      )
    }))

  it.scopedLive("one client serves many requests at once (the layer's own agent)", () =>
    Effect.gen(function* () {
      const { url } = yield* server((request, _body, response) => {
        setTimeout(() => response.end(JSON.stringify({ path: request.url })), 5)
      })
      const paths = yield* withClient((http) =>
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => Effect.flatMap(http.execute(HttpClientRequest.get(`${url}/${i}`)), (r) => r.json), {
          concurrency: 50
        })
      )
      expect(paths).toHaveLength(200)
      expect(paths[199]).toEqual({ path: "/199" })
    }))
})
