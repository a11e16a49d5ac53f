/**
 * The README's quick start as a program that compiles and runs (test/quickstart.test.ts runs it
 * against a local server): fetch interaction counts for many articles, 3 at a time, through a
 * shared circuit breaker, classifying every failure into the engine's taxonomy.
 */
import { Duration, Effect, Schema } from "effect"
import {
  CircuitBreakerRegistry,
  Engine,
  InvalidResponse,
  Permanent,
  RateLimited,
  Transient,
  type TaskError
} from "../src/index.js"

const Interactions = Schema.Struct({
  views: Schema.Number,
  likes: Schema.Number,
  comments: Schema.Number,
  shares: Schema.Number
})

/** One upstream call. The AbortSignal makes a timeout or a cancel close the socket. */
export const fetchInteractions = (baseUrl: string, articleId: string) =>
  Effect.tryPromise({
    try: (signal) => fetch(`${baseUrl}/articles/${encodeURIComponent(articleId)}/interactions`, { signal }),
    catch: (): TaskError => new Transient({ message: "connection failed" })
  }).pipe(
    Effect.flatMap((res): Effect.Effect<unknown, TaskError> => {
      if (res.status === 429) {
        const after = Number(res.headers.get("retry-after"))
        return Effect.fail(
          Number.isFinite(after) && after >= 0
            ? new RateLimited({ message: "429 Too Many Requests", retryAfter: Duration.seconds(after) })
            : new RateLimited({ message: "429 Too Many Requests" })
        )
      }
      if (res.status >= 500) return Effect.fail(new Transient({ message: `HTTP ${res.status}`, status: res.status }))
      if (!res.ok) return Effect.fail(new Permanent({ message: `HTTP ${res.status}`, status: res.status }))
      return Effect.tryPromise({
        try: () => res.json(),
        catch: () => new InvalidResponse({ message: "body is not JSON" })
      })
    }),
    Effect.flatMap((body) =>
      Schema.decodeUnknown(Interactions)(body).pipe(
        Effect.mapError((e) => new InvalidResponse({ message: e.message }))
      )
    )
  )

export const fetchAll = (baseUrl: string, articleIds: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const breakers = yield* CircuitBreakerRegistry.CircuitBreakerRegistry
    const forum = yield* breakers.get("forum")
    const { results, summary } = yield* Engine.runWithSummary(
      articleIds,
      (articleId) => fetchInteractions(baseUrl, articleId),
      { name: "interactions", maxConcurrent: 3, attemptTimeout: "30 seconds", breaker: forum },
      { idOf: (articleId) => articleId }
    )
    // results[i] is the outcome of articleIds[i]: { index, id, status, attempts, durationMs, value | error }
    yield* Effect.log(`${summary.succeeded}/${summary.total} fetched`)
    return results
  })

// Run it: FORUM_API_URL=http://… npx tsx examples/quickstart.ts a1 a2 a3
if (import.meta.url === `file://${process.argv[1]}`) {
  const baseUrl = process.env["FORUM_API_URL"] ?? "http://127.0.0.1:8081"
  fetchAll(baseUrl, process.argv.slice(2)).pipe(
    Effect.tap((results) => Effect.log(JSON.stringify(results, null, 2))),
    Effect.provide(CircuitBreakerRegistry.layer),
    Effect.runPromise
  )
}
