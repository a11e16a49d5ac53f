/**
 * The whole service (`Server.layer`) in the test process on 127.0.0.1 (port 0), wired to an
 * in-process sandbox over real sockets, with its config from a Map and its logs captured. Also
 * streaming HTTP helpers (node:http) for tests that need lines and chunks as they arrive, and, from
 * `requests.ts`, the plain ones (fetch, polling, metrics).
 */
import { FetchHttpClient, HttpServer } from "@effect/platform"
import { ConfigProvider, Context, Effect, Layer, Logger, LogLevel } from "effect"
import * as http from "node:http"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Server from "../../src/http/Server.js"
import * as Sandbox from "../../src/sandbox/Sandbox.js"
import { HttpFailure, seenBodies } from "./requests.js"

export * from "./requests.js"

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
