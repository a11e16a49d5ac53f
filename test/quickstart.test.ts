/** The README quick start, run for real against a local HTTP server on 127.0.0.1. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer, type Server } from "node:http"
import { CircuitBreakerRegistry } from "../src/index.js"
import { fetchAll } from "../examples/quickstart.js"

const serve = Effect.acquireRelease(
  Effect.async<{ server: Server; url: string; hits: Map<string, number> }>((resume) => {
    const hits = new Map<string, number>()
    const server = createServer((req, res) => {
      const id = req.url?.split("/")[2] ?? ""
      const n = (hits.get(id) ?? 0) + 1
      hits.set(id, n)
      if (id === "missing") return void res.writeHead(404).end()
      if (id === "garbage") return void res.writeHead(200, { "content-type": "application/json" }).end('{"views":"lots"}')
      if (id === "limited" && n === 1) return void res.writeHead(429, { "retry-after": "0" }).end()
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ views: 10, likes: 2, comments: 1, shares: 0 }))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}`, hits }))
    })
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

describe("README quick start", () => {
  it.scopedLive("fetches, classifies 404 and bad bodies, and retries a 429 after Retry-After", () =>
    Effect.gen(function* () {
      const { url, hits } = yield* serve
      const results = yield* fetchAll(url, ["a1", "missing", "garbage", "limited", "a2"])
      expect(results.map((r) => r.status)).toEqual(["succeeded", "failed", "failed", "succeeded", "succeeded"])
      expect(results.map((r) => (r.status === "succeeded" ? undefined : r.error.type))).toEqual([
        undefined,
        "upstream_rejected",
        "invalid_response",
        undefined,
        undefined
      ])
      expect(hits.get("limited")).toBe(2)
      expect(results[0]).toMatchObject({ id: "a1", value: { views: 10, likes: 2, comments: 1, shares: 0 } })
    }).pipe(Effect.provide(CircuitBreakerRegistry.layer)))
})
