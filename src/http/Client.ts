/**
 * Calling the service from another Effect program: a typed client derived from the HTTP contract
 * (`make`), and `events`, which reads a job's NDJSON or SSE event stream incrementally — the derived
 * client would buffer a streamed body whole, so streams go through the raw HttpClient.
 */
import { HttpApiClient, HttpClient, HttpClientRequest, type HttpClientError } from "@effect/platform"
import { Data, Effect, Schema, Stream } from "effect"
import { JobEvent } from "../domain/JobEvent.js"
import { Api } from "./Api.js"

export { Api }

/**
 * The typed client: `client.batches.executeMultiple(...)`, `client.jobs.get({ path: { id }, urlParams: {} })`,
 * `client.jobs.results({ path: { id }, urlParams: { after, limit } })` (a job's results, paged), …
 */
export const make = (baseUrl: string, options: { readonly apiKey?: string } = {}) =>
  HttpApiClient.make(Api, {
    baseUrl,
    ...(options.apiKey === undefined
      ? {}
      : { transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(options.apiKey)) })
  })

export class StreamError extends Data.TaggedError("StreamError")<{ readonly message: string; readonly status?: number }> {}

const decodeEvent = Schema.decodeUnknown(Schema.parseJson(JobEvent))

/** SSE frames → their `data:` payloads (one event per frame; multi-line data joined by "\n"). */
const sseData = (lines: Stream.Stream<string, StreamError | HttpClientError.HttpClientError>) =>
  lines.pipe(
    Stream.mapAccum([] as Array<string>, (data, line) => {
      if (line === "") return [[], data.length === 0 ? [] : [data.join("\n")]]
      if (line.startsWith("data:")) return [[...data, line.slice(line.startsWith("data: ") ? 6 : 5)], []]
      return [data, []]
    }),
    Stream.flattenIterables
  )

/**
 * A request whose response is a stream of job events — `POST /api/post/batch-generate-stream`, or
 * `GET /api/jobs/{id}/events` — decoded one event at a time as the lines arrive.
 */
export const events = (
  request: HttpClientRequest.HttpClientRequest
): Stream.Stream<JobEvent, StreamError | HttpClientError.HttpClientError, HttpClient.HttpClient> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(request)
      if (response.status >= 300) {
        const body = yield* Effect.orElseSucceed(response.text, () => "")
        return yield* new StreamError({ message: `HTTP ${response.status}: ${body.slice(0, 500)}`, status: response.status })
      }
      const sse = (response.headers["content-type"] ?? "").includes("text/event-stream")
      const lines = response.stream.pipe(Stream.decodeText(), Stream.splitLines)
      const payloads = sse ? sseData(lines) : Stream.filter(lines, (line) => line.trim() !== "")
      return Stream.mapEffect(payloads, (payload) =>
        Effect.mapError(decodeEvent(payload), (error) => new StreamError({ message: `bad event: ${error.message}` }))
      )
    })
  )

/** `GET /api/jobs/{id}/events` as NDJSON: stored events first, then live ones until `completed`. */
export const jobEvents = (baseUrl: string, jobId: string, options: { readonly apiKey?: string } = {}) =>
  events(
    HttpClientRequest.get(`${baseUrl}/api/jobs/${encodeURIComponent(jobId)}/events`).pipe(
      HttpClientRequest.setHeader("accept", "application/x-ndjson"),
      options.apiKey === undefined ? (r) => r : HttpClientRequest.bearerToken(options.apiKey)
    )
  )
