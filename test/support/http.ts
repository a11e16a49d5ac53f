/**
 * The whole service (`Server.layer`) in the test process on 127.0.0.1 (port 0), wired to an
 * in-process sandbox over real sockets, with its config from a Map and its logs captured. Also raw
 * HTTP helpers (fetch and node:http) for tests that need status codes, headers, bodies and timing.
 */
import { FetchHttpClient, HttpServer } from "@effect/platform"
import { ConfigProvider, Context, Data, Duration, Effect, Layer, Logger, LogLevel, Schedule } from "effect"
import * as http from "node:http"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Client from "../../src/http/Client.js"
import * as Server from "../../src/http/Server.js"
import type { JobDetail } from "../../src/jobs/Model.js"
import * as Sandbox from "../../src/sandbox/Sandbox.js"

/** Distinctive secrets, so a leak into a log line or a response body can be searched for. */
export const secrets = {
  llmApiKey: "sk-secret-llm-123",
  newsApiKey: "news-secret-key-456",
  kol101Password: "pw-101",
  kol102Password: "pw-102"
} as const

export interface ServiceInfo {
  /** e.g. "http://127.0.0.1:54321" */
  readonly url: string
  /** Every log line (debug and up) the service wrote so far (logfmt: message, annotations and cause). */
  readonly logs: ReadonlyArray<string>
}

export class Service extends Context.Tag("test/Service")<Service, ServiceInfo>() {}

const baseEnv = (sandboxUrl: string, dataDir: string): Record<string, string> => ({
  HOST: "127.0.0.1",
  PORT: "0",
  DATA_DIR: dataDir,
  SHUTDOWN_GRACE_PERIOD: "1 second",
  // The service runs in the test's process, on the event loop of a vitest worker that also runs the
  // test, the sandbox and (with other files running at once) shares 2 cores: its delay passed the
  // default 1 s there and a submission got 503 Overloaded (retention test, three files in parallel).
  // The guard itself is not what these tests are about; a test about it sets its own value.
  MAX_EVENT_LOOP_DELAY: "30 seconds",
  FORUM_API_URL: sandboxUrl,
  LLM_BASE_URL: sandboxUrl,
  MARKET_API_URL: sandboxUrl,
  NEWS_API_URL: sandboxUrl,
  LLM_API_KEY: secrets.llmApiKey,
  NEWS_API_KEY: secrets.newsApiKey,
  KOL_101_EMAIL: "kol101@example.com",
  KOL_101_PASSWORD: secrets.kol101Password,
  KOL_102_EMAIL: "kol102@example.com",
  KOL_102_PASSWORD: secrets.kol102Password,
  // The sandbox rejects the password "wrong": a permanent login failure.
  KOL_103_EMAIL: "kol103@example.com",
  KOL_103_PASSWORD: "wrong"
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-http-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/**
 * Sandbox + service + FetchHttpClient, with `Service` (url, captured logs) and `Sandbox.Sandbox` in
 * the context. `env` entries are added to (or replace) the base config.
 */
export const serviceLayer = (options: { readonly env?: Readonly<Record<string, string>>; readonly seed?: number } = {}) => {
  const lines: Array<string> = []
  const collector = Logger.make((entry) => {
    lines.push(Logger.logfmtLogger.log(entry))
  })
  const server = Layer.unwrapScoped(
    Effect.gen(function* () {
      const sandbox = yield* Sandbox.Sandbox
      const dataDir = yield* tempDir
      const env = { ...baseEnv(sandbox.url, dataDir), ...options.env }
      return Server.layer.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))
    })
  )
  const info = Layer.effect(
    Service,
    Effect.map(HttpServer.addressFormattedWith(Effect.succeed), (url): ServiceInfo => ({ url, logs: lines }))
  )
  return info.pipe(
    Layer.provideMerge(server),
    Layer.provideMerge(Sandbox.layer({ seed: options.seed ?? 7 })),
    Layer.provideMerge(FetchHttpClient.layer),
    // Debug too: retry messages (with the upstream's error) are logged at debug level.
    Layer.provide(Layer.merge(Logger.replace(Logger.defaultLogger, collector), Logger.minimumLogLevel(LogLevel.Debug)))
  )
}

// ---- raw HTTP ------------------------------------------------------------------------------------

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

export interface TimedLine {
  readonly at: number
  readonly line: string
}

/**
 * Reads a streamed response incrementally and stamps each complete line with its arrival time (ms
 * since the request was sent), so a test can tell a streamed body from a buffered one.
 */
export const streamLines = (
  url: string,
  init: RequestInit = {}
): Effect.Effect<{ readonly status: number; readonly headers: Headers; readonly lines: ReadonlyArray<TimedLine> }, HttpFailure> =>
  Effect.tryPromise({
    try: async (signal) => {
      const start = performance.now()
      const response = await fetch(url, { signal, ...init })
      const lines: Array<TimedLine> = []
      if (response.body === null) return { status: response.status, headers: response.headers, lines }
      const reader = response.body.getReader()
      const decoder = new TextDecoder()
      let buffer = ""
      let all = ""
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        const text = decoder.decode(value, { stream: true })
        all += text
        buffer += text
        const at = performance.now() - start
        let newline = buffer.indexOf("\n")
        while (newline >= 0) {
          lines.push({ at, line: buffer.slice(0, newline) })
          buffer = buffer.slice(newline + 1)
          newline = buffer.indexOf("\n")
        }
      }
      if (buffer !== "") lines.push({ at: performance.now() - start, line: buffer })
      seenBodies.push(all)
      return { status: response.status, headers: response.headers, lines }
    },
    catch: (error) => new HttpFailure({ message: `${init.method ?? "GET"} ${url}: ${String(error)}` })
  })

export interface ChunkedResponse {
  /** 0 when the server closed the connection without answering. */
  readonly status: number
  readonly body: string
  /** The client-side error when no response arrived (e.g. "socket hang up"). */
  readonly error?: string
}

/**
 * A POST whose body is sent with `Transfer-Encoding: chunked` (no Content-Length), through node:http.
 * The server may answer (and close) before the whole body is written; that is not an error here. A
 * connection closed without any response resolves with status 0 and the client error.
 */
export const chunkedPost = (
  url: string,
  chunks: ReadonlyArray<string>,
  headers: Readonly<Record<string, string>> = {}
): Effect.Effect<ChunkedResponse> =>
  Effect.async<ChunkedResponse>((resume) => {
    const request = http.request(url, {
      method: "POST",
      headers: { "content-type": "application/json", "transfer-encoding": "chunked", ...headers }
    })
    let settled = false
    const settle = (response: ChunkedResponse) => {
      if (settled) return
      settled = true
      resume(Effect.succeed(response))
    }
    request.on("response", (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        body += chunk
      })
      response.on("end", () => {
        seenBodies.push(body)
        settle({ status: response.statusCode ?? 0, body })
      })
      response.on("error", (error) => settle({ status: response.statusCode ?? 0, body, error: String(error) }))
    })
    // EPIPE/ECONNRESET while still writing are expected when the server answers early; give a
    // response that is on its way a moment to arrive before settling on "no response".
    request.on("error", (error) => setTimeout(() => settle({ status: 0, body: "", error: String(error) }), 200))
    void (async () => {
      for (const chunk of chunks) {
        if (request.destroyed) return
        request.write(chunk)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      if (!request.destroyed) request.end()
    })()
    return Effect.sync(() => void request.destroy())
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
