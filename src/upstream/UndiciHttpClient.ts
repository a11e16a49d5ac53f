/**
 * The upstreams' `HttpClient`: `@effect/platform`'s own `HttpClient.make` over an undici dispatcher,
 * with a lighter response than `@effect/platform-node`'s `layerUndici`.
 *
 * Why ours (issue 13's ledger, `npm run bench:ledger` step c1 vs c1p, and a micro-benchmark of 4,000
 * GETs at 50 in flight, CPU µs per call, 3 runs on the shared 2-core machine): platform-node's undici
 * client 704 / 885 / 820, this one 437 / 528 / 527. platform-node builds each response's body effect
 * with `Effect.cached` and runs it with `Effect.runSync` — a whole fiber per response before the body
 * is even read — and reads the body through two more effects. Here the body is read once into a
 * cached promise. Everything else is the platform's: `HttpClient.make` still makes the AbortController
 * the request is cancelled with, the client span when a tracer records spans, the trace headers, the
 * abort on interruption while the body is read, and the abort of a body nobody reads (its
 * FinalizationRegistry) — the behaviour the upstream clients and the tests rely on.
 */
import { Cookies, Headers, HttpClient, HttpClientError, type HttpClientRequest, HttpClientResponse, UrlParams } from "@effect/platform"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import { NodeHttpClient, NodeStream } from "@effect/platform-node"
import { Effect, Inspectable, Layer, Option, type Stream } from "effect"
import { Readable } from "node:stream"
import type { Dispatcher } from "undici"

type Source = Dispatcher.ResponseData
type Body = string | Uint8Array | Readable | null

// A body that errors after nobody listens (the caller interrupted, the socket broke) must not become
// an unhandled 'error' event that ends the process.
const ignore = (): void => {}

// Stateless without `{ stream: true }`, so one decoder serves every response.
const utf8 = new TextDecoder()

class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  private bytes: Promise<ArrayBuffer> | undefined
  private cachedHeaders: Headers.Headers | undefined
  private cachedCookies: Cookies.Cookies | undefined

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly source: Source
  ) {
    super()
    source.body.on("error", ignore)
  }

  get status(): number {
    return this.source.statusCode
  }
  get headers(): Headers.Headers {
    return (this.cachedHeaders ??= Headers.fromInput(this.source.headers))
  }
  get cookies(): Cookies.Cookies {
    if (this.cachedCookies !== undefined) return this.cachedCookies
    const header = this.source.headers["set-cookie"]
    return (this.cachedCookies =
      header === undefined ? Cookies.empty : Cookies.fromSetCookie(Array.isArray(header) ? header : [header]))
  }
  get remoteAddress(): Option.Option<string> {
    return Option.none()
  }

  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  /** The body, read once: every accessor below shares it (as the platform's cached effects do). */
  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.tryPromise({
      try: () => (this.bytes ??= this.source.body.arrayBuffer()),
      catch: (cause) => this.decodeError(cause)
    })
  }
  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.arrayBuffer, (bytes) => utf8.decode(bytes))
  }
  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({ try: (): unknown => (text === "" ? null : JSON.parse(text)), catch: (cause) => this.decodeError(cause) })
    )
  }
  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({ try: () => UrlParams.fromInput(new URLSearchParams(text)), catch: (cause) => this.decodeError(cause) })
    )
  }
  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    const contentType = this.headers["content-type"]
    return Effect.flatMap(this.arrayBuffer, (bytes) =>
      Effect.tryPromise({
        try: () => new Response(bytes, contentType === undefined ? {} : { headers: { "content-type": contentType } }).formData(),
        catch: (cause) => this.decodeError(cause)
      })
    )
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return NodeStream.fromReadable(
      () => this.source.body,
      (cause) => this.decodeError(cause)
    )
  }

  toJSON(): unknown {
    return { _id: "@effect/platform/HttpClientResponse", request: this.request.toJSON(), status: this.status }
  }
}

const requestBody = (
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<Body, HttpClientError.RequestError> => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(null)
    case "Uint8Array":
      return Effect.succeed(body.body)
    case "Raw": {
      // Whatever the caller gave: undici sends a string, bytes or a Node stream as they are.
      const raw = body.body
      return typeof raw === "string" || raw instanceof Uint8Array || raw instanceof Readable
        ? Effect.succeed(raw)
        : Effect.fail(new HttpClientError.RequestError({ request, reason: "Encode", description: "a raw body must be a string, bytes or a stream" }))
    }
    case "FormData":
      // The upstreams send JSON; a form would need its multipart encoding here.
      return Effect.fail(new HttpClientError.RequestError({ request, reason: "Encode", description: "form bodies are not supported by the upstreams' client" }))
    case "Stream":
      return NodeStream.toReadable(body.stream)
  }
}

/** The client over `dispatcher` (its lifetime is the caller's). */
export const make = (dispatcher: Dispatcher): HttpClient.HttpClient =>
  HttpClient.make((request, url, signal) => {
    const send = (body: Body) =>
      Effect.tryPromise({
        try: () =>
          dispatcher.request({
            signal,
            method: request.method,
            headers: request.headers,
            origin: url.origin,
            path: url.pathname + url.search + url.hash,
            body,
            // The attempt's timeout (the engine's) ends the call; undici's own would race it.
            headersTimeout: 60 * 60 * 1000,
            bodyTimeout: 0
          }),
        catch: (cause) => new HttpClientError.RequestError({ request, reason: "Transport", cause })
      })
    const answer = (source: Source): HttpClientResponse.HttpClientResponse => new UndiciResponse(request, source)
    // The common case (a GET, a JSON body) without the extra effect that converts a streamed body.
    return request.body._tag === "Empty" || request.body._tag === "Uint8Array"
      ? Effect.map(send(request.body._tag === "Empty" ? null : request.body.body), answer)
      : Effect.map(Effect.flatMap(requestBody(request), send), answer)
  })

/** The client over platform-node's undici `Dispatcher` (an Agent of its own, closed with the layer). */
export const layer: Layer.Layer<HttpClient.HttpClient> = Layer.effect(
  HttpClient.HttpClient,
  Effect.map(NodeHttpClient.Dispatcher, make)
).pipe(Layer.provide(NodeHttpClient.dispatcherLayer))
