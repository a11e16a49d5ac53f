/**
 * Raw HTTP helpers that need no service in this process: one request with fetch (status, headers and
 * body), polling until a condition holds, a job polled through the typed client, a metric read from
 * `GET /metrics`, a retry while the service says Overloaded. Apart from `http.ts` (which re-exports
 * them) so that tests of spawned services do not load the whole service to use them.
 */
import { Data, Duration, Effect, Schedule } from "effect"
import * as Client from "../../src/http/Client.js"
import type { JobDetail } from "../../src/jobs/Model.js"

export class HttpFailure extends Data.TaggedError("HttpFailure")<{ readonly message: string }> {}

export interface RawResponse {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

/** Every raw response body seen by this process, for the "no stack traces, no secrets" checks. */
export const seenBodies: Array<string> = []

/** One request with fetch, the whole body read as text. */
export const raw = (url: string, init: RequestInit = {}): Effect.Effect<RawResponse, HttpFailure> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { signal, ...init })
      const body = await response.text()
      seenBodies.push(body)
      return { status: response.status, headers: response.headers, body }
    },
    catch: (error) => new HttpFailure({ message: `${init.method ?? "GET"} ${url}: ${String(error)}` })
  })

/** JSON.parse, typed as unknown (callers narrow with expect/toMatchObject). */
export const json = (response: RawResponse): unknown => JSON.parse(response.body)

/** A JSON request with fetch. */
export const rawJson = (
  url: string,
  method: string,
  body: unknown,
  headers: Readonly<Record<string, string>> = {}
): Effect.Effect<RawResponse, HttpFailure> =>
  raw(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

/** Retries `check` (which fails while its condition does not hold) every 25 ms, up to `within`. */
export const eventually = <A, E, R>(check: Effect.Effect<A, E, R>, within: Duration.DurationInput = "10 seconds") =>
  Effect.retry(check, Schedule.spaced(Duration.millis(25)).pipe(Schedule.upTo(within)))

/** GET /api/jobs/{id} on the service at `baseUrl` through the typed client until `done` holds. */
export const waitForJob = (
  baseUrl: string,
  id: string,
  done: (job: JobDetail) => boolean,
  within: Duration.DurationInput = "10 seconds"
) =>
  Effect.gen(function* () {
    const client = yield* Client.make(baseUrl)
    return yield* eventually(client.jobs.get({ path: { id }, urlParams: {} }).pipe(Effect.filterOrFail(done, () => "not yet")), within)
  })

/**
 * The sum of the samples of Prometheus metric `name` whose labels include every pair in `labels`,
 * in a `GET /metrics` text (0 when there is none). What an instance itself reports — which process
 * ran items, has calls in flight, holds shards — without reading its log wording.
 */
export const sumSamples = (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line)
    if (match === null || match[1] !== name) continue
    const tags = match[2] ?? ""
    if (Object.entries(labels).every(([key, value]) => tags.includes(`${key}="${value}"`))) sum += Number(match[3])
  }
  return sum
}

/** `sumSamples` of the service at `baseUrl`, read now. */
export const metric = (baseUrl: string, name: string, labels: Readonly<Record<string, string>> = {}) =>
  Effect.map(raw(`${baseUrl}/metrics`), (response) => sumSamples(response.body, name, labels))

/**
 * A loaded machine may refuse a new batch for a moment (503 `Overloaded`, "retry later", while the
 * service's event loop is late): as a client would, the request is sent again (for up to 30 s).
 */
export const retryOverloaded = <A, E extends { readonly _tag: string }, R>(self: Effect.Effect<A, E, R>) =>
  Effect.retry(self, {
    while: (error) => error._tag === "Overloaded",
    schedule: Schedule.spaced(Duration.millis(500)).pipe(Schedule.upTo(Duration.seconds(30)))
  })
