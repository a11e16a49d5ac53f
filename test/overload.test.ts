/**
 * A burst through the real process (`src/main.ts`, embedded sandbox on its worker thread): 150
 * concurrent sync batches keep `/health` answering in milliseconds and fail no item. It measures
 * latency, so it runs alone after the other files (vitest.config.ts, project "load"); admission and
 * memory, which count rather than time, are `overload.admission.test.ts` and `overload.memory.test.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Schema } from "effect"
import { request, startService, submit } from "./support/overload.js"
import { createDatabase, postgres } from "./support/postgres.js"

const quantile = (sorted: ReadonlyArray<number>, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN

const SyncAnswer = Schema.parseJson(Schema.Struct({ results: Schema.Array(Schema.Struct({ status: Schema.String })) }))

/** 150 concurrent sync batches of 20 items against `service`, `/health` probed every 50 ms meanwhile. */
const burst = (url: string) =>
  Effect.gen(function* () {
    // Warm up: the first requests compile code paths the burst would otherwise pay for at once.
    yield* submit(url, "warm", 20, false)

    const latencies: Array<number> = []
    let running = true
    const prober = Effect.gen(function* () {
      while (running) {
        const start = performance.now()
        const health = yield* request(`${url}/health`)
        expect(health.status).toBe(200)
        latencies.push(performance.now() - start)
        yield* Effect.sleep(Duration.millis(50))
      }
    })
    const batches = Effect.forEach(
      Array.from({ length: 150 }, (_, b) => b),
      (b) => submit(url, `burst${b}`, 20, false),
      { concurrency: "unbounded" }
    ).pipe(Effect.ensuring(Effect.sync(() => (running = false))))
    const [answers] = yield* Effect.all([batches, prober], { concurrency: 2 })

    const statuses = answers.map((a) => a.status)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
    const results = (yield* Effect.forEach(answers, (a) => Schema.decodeUnknown(SyncAnswer)(a.body))).flatMap((a) => a.results)
    expect(results.length).toBe(3000)
    expect(results.filter((r) => r.status !== "succeeded")).toEqual([])

    const sorted = [...latencies].sort((a, b) => a - b)
    const summary = { n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) }
    console.log(`/health during the burst (ms): ${JSON.stringify(summary)}`)
    expect(sorted.length).toBeGreaterThan(20)
    return summary
  })

describe("overload", () => {
  it.live(
    "150 concurrent sync batches (3,000 items): /health keeps answering in milliseconds and every item succeeds",
    () =>
      Effect.gen(function* () {
        const service = yield* startService({ SANDBOX_PROFILE: "instant" })
        const summary = yield* burst(service.url)
        // Measured on a 2-core machine with this client on it: p50 ~11-14 ms, p99 59-233 ms (the worst
        // in the first second, while 150 requests are parsed and 150 jobs created). Before: p99
        // 0.3-0.8 s, max 5-9 s. The 50 ms p99 is not met; these bounds fail on the old code.
        expect(summary.p99).toBeLessThan(300)
        expect(summary.max ?? Number.POSITIVE_INFINITY).toBeLessThan(1000)
      }).pipe(Effect.scoped),
    180_000
  )

  it.live(
    "the same burst on PostgreSQL (one instance): /health keeps answering and every item succeeds",
    () =>
      Effect.gen(function* () {
        const server = yield* postgres
        const url = yield* createDatabase(server.url, "overload")
        const service = yield* startService({ SANDBOX_PROFILE: "instant", DATABASE_URL: url })
        const summary = yield* burst(service.url)
        expect(summary.p99).toBeLessThan(300)
        expect(summary.max ?? Number.POSITIVE_INFINITY).toBeLessThan(1000)
      }).pipe(Effect.scoped),
    240_000
  )
})
