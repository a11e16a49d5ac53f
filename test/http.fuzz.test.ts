/**
 * Fuzzing the HTTP front door (issue 11): one real service on 127.0.0.1, every route of the contract
 * hit with generated requests — arbitrary JSON bodies, deeply nested and truncated JSON, wrong and
 * odd content types, odd query strings and odd ids. Whatever the request, the answer is never a 5xx,
 * never a stack trace, and the service keeps answering `/health`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Service, serviceLayer } from "./support/http.js"

/** Frames of a stack trace, internals' paths, or an error's name leaking into a response. */
const leak = /\n\s+at |\bat [^\s]+ \(.*:\d+:\d+\)|node_modules|\/src\/|RangeError|TypeError|Maximum call stack|InternalError/

interface Route {
  readonly method: string
  /** `{id}` is replaced by a generated id. */
  readonly path: string
  readonly body: boolean
}

/** Every route of the contract. */
const routes: ReadonlyArray<Route> = [
  { method: "POST", path: "/api/interactions/fetch-all-interactions", body: true },
  { method: "POST", path: "/api/post/batch-generate-stream", body: true },
  { method: "POST", path: "/api/intraday/parallel/execute-multiple", body: true },
  { method: "POST", path: "/api/posts", body: true },
  { method: "PATCH", path: "/api/processors/{id}", body: true },
  { method: "PATCH", path: "/api/upstreams/{id}", body: true },
  { method: "GET", path: "/api/jobs", body: false },
  { method: "GET", path: "/api/jobs/{id}", body: false },
  { method: "GET", path: "/api/jobs/{id}/results", body: false },
  { method: "GET", path: "/api/jobs/{id}/events", body: false },
  { method: "DELETE", path: "/api/jobs/{id}", body: false },
  { method: "GET", path: "/api/posts/{id}", body: false },
  { method: "GET", path: "/api/processors", body: false },
  { method: "GET", path: "/api/breakers", body: false },
  { method: "GET", path: "/api/upstreams", body: false },
  { method: "GET", path: "/api/upstreams/history", body: false },
  { method: "GET", path: "/api/instances", body: false },
  { method: "GET", path: "/health", body: false },
  { method: "GET", path: "/ready", body: false },
  { method: "GET", path: "/metrics", body: false }
]

const nested = fc
  .tuple(fc.integer({ min: 1, max: 5_000 }), fc.constantFrom("[", "{\"a\":"), fc.boolean())
  .map(([depth, open, closed]) => open.repeat(depth) + (closed ? "1" + (open === "[" ? "]" : "}").repeat(depth) : ""))

/** Bodies: valid JSON of any shape, near-miss shapes of the real bodies, nesting, broken JSON, bytes. */
const body = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.record({
    posts: fc.array(fc.record({ postId: fc.string(), articleId: fc.string(), kolSerial: fc.oneof(fc.string(), fc.integer()) })),
    maxConcurrent: fc.oneof(fc.integer(), fc.double(), fc.string())
  }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
  fc.array(fc.record({ triggerKey: fc.string(), limit: fc.integer(), params: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: [] }), { maxLength: 3 })
    .map((v) => JSON.stringify(v)),
  nested,
  fc.string({ maxLength: 200 }),
  fc.constantFrom("", "null", "true", "0", "\"x\"", "[", "{", "{\"posts\":", "\u0000", "\uFEFF{}", "{\"__proto__\":{\"x\":1}}", "[]", "{}"),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString("latin1"))
)

const contentType = fc.option(
  fc.oneof(
    fc.constantFrom(
      "application/json",
      "application/json; charset=utf-8",
      "APPLICATION/JSON",
      "multipart/form-data",
      "multipart/form-data; boundary=x",
      "text/plain",
      "text/html",
      "application/x-www-form-urlencoded",
      "application/octet-stream",
      "application/xml",
      "",
      ";",
      "application/json; boundary=\"",
      "*/*"
    ),
    fc.string({ maxLength: 40 }).filter((s) => /^[\x20-\x7e]*$/.test(s))
  ),
  { nil: undefined }
)

const queryKey = fc.oneof(
  fc.constantFrom("limit", "offset", "cursor", "kind", "status", "after", "results", "maxConcurrent", "timeoutSeconds", "priority", "__proto__", "constructor", "toString", ""),
  fc.string({ maxLength: 12 })
)
const queryValue = fc.oneof(
  fc.constantFrom("0", "1", "-1", "50", "1000", "1001", "0x10", "1e3", "NaN", "Infinity", "", "null", "completed", "interactions", "high", "AAAA"),
  fc.string({ maxLength: 20 })
)
const query = fc
  .array(fc.tuple(queryKey, queryValue), { maxLength: 4 })
  .map((pairs) => (pairs.length === 0 ? "" : `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")}`))

const id = fc.oneof(
  fc.constantFrom("interactions", "post_generation", "forum", "llm", "00000000-0000-0000-0000-000000000000", "..", ".", "%00", "a".repeat(2_000), "__proto__", "constructor"),
  // Sent as written: broken percent-encoding, encoded slashes and dots.
  fc.constantFrom("raw:%", "raw:%E0%A4%A", "raw:%ff", "raw:a%2Fb", "raw:%2E%2E", "raw:%00"),
  fc.string({ minLength: 1, maxLength: 40 })
)

const request = fc.record({
  route: fc.constantFrom(...routes),
  id,
  query,
  contentType,
  body,
  async: fc.boolean()
})

describe("fuzz", () => {
  it.live("every route, generated requests: never a 5xx, never a stack trace; /health answers after", () =>
    Effect.provide(
      Effect.gen(function* () {
        const { url: base, logs } = yield* Service
        let sent = 0
        const property = fc.asyncProperty(request, async (r) => {
          const path = r.route.path.replace("{id}", r.id.startsWith("raw:") ? r.id.slice(4) : encodeURIComponent(r.id))
          const headers: Record<string, string> = {}
          if (r.contentType !== undefined) headers["content-type"] = r.contentType
          // Jobs a generated body happens to start are not waited for (a sync batch would be).
          if (r.async) headers.prefer = "respond-async"
          const response = await fetch(`${base}${path}${r.query}`, {
            method: r.route.method,
            headers,
            // Bytes, not a string: fetch would add `content-type: text/plain` to a string body.
            ...(r.route.body ? { body: new TextEncoder().encode(r.body) } : {}),
            signal: AbortSignal.timeout(10_000)
          })
          // An event stream of a real job would run until it ends: read its head only.
          const text = response.headers.get("content-type")?.includes("event-stream") === true
            ? (await response.body?.cancel(), "")
            : await response.text()
          sent++
          const what = `${r.route.method} ${path.slice(0, 80)}${r.query} [${r.contentType ?? "no content-type"}] ${r.body.slice(0, 80)}`
          expect(response.status, `${what} → ${text.slice(0, 300)}`).toBeLessThan(500)
          expect(text, what).not.toMatch(leak)
          if (response.status >= 400) {
            const error = JSON.parse(text) as { _tag?: unknown; message?: unknown }
            expect(typeof error._tag, what).toBe("string")
            expect(typeof error.message, what).toBe("string")
          }
          // A body in another type than JSON is a 415, once the route is matched (an id of ".", of
          // broken percent-encoding or over 100 characters matches none: 404) and its query checked.
          const json = r.contentType?.split(";")[0]?.trim().toLowerCase() === "application/json"
          if (r.route.body && !r.route.path.includes("{id}") && r.query === "" && r.contentType !== undefined && !json) {
            expect(response.status, what).toBe(415)
          }
        })
        yield* Effect.promise(() => fc.assert(property, { numRuns: 400, seed: Date.now() % 2 ** 31 }))
        expect(sent).toBe(400)

        const health = yield* Effect.promise(() => fetch(`${base}/health`, { signal: AbortSignal.timeout(2_000) }))
        expect(health.status).toBe(200)
        expect(logs.filter((line) => line.includes("unhandled request failure"))).toEqual([])
      }),
      serviceLayer()
    ), 60_000)
})
