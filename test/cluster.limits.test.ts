/**
 * Limits across instances: three real service processes on one PostgreSQL (a server brought up by
 * the test, each test its own database), one sandbox upstream in this process (test/support/cluster.ts).
 * An upstream budget's ceiling, a cooldown and a PATCH hold cluster-wide; a job's maxConcurrent holds
 * across instances while its items spread over all of them and any instance answers for it; a dead
 * upstream seen by one instance opens the breaker on all, with one probe cluster-wide.
 */
import { expect, layer } from "@effect/vitest"
import { FetchHttpClient } from "@effect/platform"
import { Context, Duration, Effect, Layer, Schedule, Schema, Stream, TestServices } from "effect"
import { UpstreamView } from "../src/http/Api.js"
import * as Client from "../src/http/Client.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { cluster, env, itemsRun, posts, submit, waitFor } from "./support/cluster.js"
import { eventually, metric, retryOverloaded } from "./support/requests.js"
import { Postgres } from "./support/postgres.js"

const UpstreamList = Schema.Array(UpstreamView)
const forumOf = (url: string) =>
  Effect.gen(function* () {
    const response = yield* Effect.promise(() => fetch(`${url}/api/upstreams`).then((r) => r.json()))
    const all = yield* Schema.decodeUnknown(UpstreamList)(response)
    const forum = all.find((u) => u.key === "forum")
    return forum ?? (yield* Effect.dieMessage("no forum budget"))
  })

/**
 * Three instances and the sandbox they call, shared by the limit test (first, on fresh processes) and
 * the breaker test (a route the limit test never calls): a bring-up is three service starts, ~7 s of
 * both cores.
 */
class Shared extends Context.Tag("test/cluster.limits/Shared")<Shared, Effect.Effect.Success<ReturnType<typeof cluster>>>() {
  static readonly layer = Layer.scoped(Shared, Effect.flatMap(Postgres, (server) => cluster(server, "cluster_shared"))).pipe(
    Layer.provideMerge(Sandbox.layer({ seed: 5, knobs: { interactions: { latency: { kind: "fixed", ms: 150 } } } }))
  )
}

// One server for the file (a bring-up is initdb + start, several seconds on a loaded machine); each
// cluster has its own database on it. No TestServices: the shared instances and sandbox run on the
// real clock.
layer(Postgres.layer, { timeout: "120 seconds", excludeTestServices: true })("several instances on PostgreSQL: limits", (it) => {
  it.effect(
    "upstream budgets are cluster-wide: the ceiling holds across instances, a cooldown seen by one pauses all, a PATCH on one applies on all",
    () =>
      Effect.gen(function* () {
        const { sandbox, instances } = yield* cluster(yield* Postgres, "cluster_budgets", 3, { FORUM_MAX_CONCURRENT: "4", FORUM_ADAPTIVE: "off" })
        const [a, b, c] = instances
        if (a === undefined || b === undefined || c === undefined) return expect.fail("three instances")
        yield* sandbox.reset
        // Three jobs, one per instance, each allowed 4: the forum still sees at most 4, logins included.
        const ids = yield* Effect.forEach(instances, (i, n) => submit(i.url, posts(30, `ceil${n}`), 4), { concurrency: "unbounded" })
        yield* Effect.forEach(ids, (id) => waitFor(b.url, id, (j) => j.status === "completed"), { concurrency: "unbounded" })
        const stats = yield* sandbox.stats
        expect(stats.routes.interactions.calls).toBe(90)
        expect(stats.totalPeakInFlight).toBeLessThanOrEqual(4)
        expect(stats.routes.interactions.peakInFlight).toBeGreaterThanOrEqual(3)

        // PATCH on one instance: the others apply it within a few polls.
        const patched = yield* Effect.promise(() =>
          fetch(`${a.url}/api/upstreams/forum`, {
            method: "PATCH",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ ceiling: 6, rate: "6000/minute" })
          })
        )
        expect(patched.status).toBe(200)
        yield* Effect.forEach([b, c], (i) =>
          forumOf(i.url).pipe(
            Effect.filterOrFail((f) => f.ceiling === 6 && f.rate === "6000/minute", () => "not yet"),
            Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("15 seconds")))
          )
        )

        // A 429 with Retry-After: 5 seen by whichever instance: admission pauses on all three (long
        // enough for the checks below to fall inside it on a loaded machine).
        yield* sandbox.setKnobs("interactions", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 5 } })
        const paused = yield* submit(c.url, posts(30, "cool"), 4)
        yield* Effect.forEach(instances, (i) => forumOf(i.url), { concurrency: "unbounded" }).pipe(
          Effect.filterOrFail((all) => all.some((f) => f.throttled > 0), () => "no 429 yet"),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("20 seconds")))
        )
        yield* sandbox.setKnobs("interactions", { rateLimitRate: 0 })
        yield* eventually(
          Effect.forEach(instances, (i) => forumOf(i.url), { concurrency: "unbounded" }).pipe(
            Effect.filterOrFail((all) => all.every((f) => f.cooldownUntil !== undefined), () => "not paused everywhere yet")
          ),
          "3 seconds"
        )
        const before = (yield* sandbox.stats).routes.interactions.calls
        yield* Effect.sleep("1 second")
        expect((yield* sandbox.stats).routes.interactions.calls).toBe(before)
        const job = yield* waitFor(a.url, paused, (j) => j.status === "completed")
        expect(job.succeeded).toBe(30)
      }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
    180_000
  )

  it.layer(Shared.layer, { timeout: "120 seconds" })("three instances shared", (it) => {
    it.effect(
      "a 60-item job at maxConcurrent 4: never more than 4 calls in flight in total, items on every instance, any instance answers",
      () =>
        Effect.gen(function* () {
          const { sandbox, instances } = yield* Shared
          const [a, b, c] = instances
          if (a === undefined || b === undefined || c === undefined) return expect.fail("three instances")
          yield* sandbox.reset
          const id = yield* submit(a.url, posts(60, "lim"), 4)
          // Progress from an instance that did not accept the job.
          const events = yield* Client.jobEvents(c.url, id).pipe(
            Stream.runCollect,
            Effect.timeout("60 seconds"),
            Effect.tapError(() =>
              Effect.gen(function* () {
                const client = yield* Client.make(b.url)
                const now = yield* client.jobs.get({ path: { id }, urlParams: {} })
                console.log("STUCK", now.status, now.completed, JSON.stringify(yield* sandbox.stats).slice(0, 300))
                for (const i of instances) console.log("--- instance\n", i.output().slice(-5000))
              }).pipe(Effect.ignore)
            )
          )
          const types = Array.from(events, (e) => e.type)
          expect(types[0]).toBe("started")
          expect(types.filter((t) => t === "item")).toHaveLength(60)
          expect(types[types.length - 1]).toBe("completed")
          const job = yield* waitFor(b.url, id, (j) => j.status === "completed")
          expect(job.succeeded).toBe(60)
          const stats = (yield* sandbox.stats).routes.interactions
          expect(stats.calls).toBe(60)
          expect(stats.peakInFlight).toBeLessThanOrEqual(4)
          expect(stats.peakInFlight).toBeGreaterThanOrEqual(3)
          // Every instance ran some of the job's items (fresh processes: this job is all they ran).
          for (const instance of instances) expect(yield* itemsRun(instance, "interactions")).toBeGreaterThan(0)
        }).pipe(Effect.provide(FetchHttpClient.layer), Effect.scoped, TestServices.provideLive),
      180_000
    )

    it.effect(
      "a dead upstream seen by one instance opens its breaker on every instance, calls stop everywhere, one probe cluster-wide closes it",
      () =>
        Effect.gen(function* () {
          const { sandbox, instances } = yield* Shared
          const [a] = instances
          if (a === undefined) return expect.fail("three instances")
          yield* sandbox.setKnobs("screen", { errorRate: 1, latency: { kind: "fixed", ms: 20 } })
          yield* sandbox.reset
          const client = yield* Client.make(a.url)
          // One item: only the instance that runs it sees the failures (3 attempts ~5 s apart).
          const failing = yield* retryOverloaded(
            client.batches.executeMultiple({
              payload: [{ triggerKey: "limit_up" }],
              urlParams: { maxConcurrent: 3 },
              headers: { prefer: "respond-async" }
            })
          )
          const marketState = (url: string) =>
            Effect.flatMap(Client.make(url), (c) => c.processors.breakers()).pipe(
              Effect.map((all) => all.find((b) => b.key === "market")?.status)
            )
          // Open on all three, whichever instance saw the failures.
          yield* Effect.forEach(instances, (instance) =>
            marketState(instance.url).pipe(
              Effect.filterOrFail((status) => status === "open", () => "not open yet"),
              Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.seconds(40))))
            )
          )
          // An instance that never called the upstream (no attempt of its own) can only have opened from
          // the shared state. Usually two such instances; when the cluster moves the item's part while it
          // retries (an instance's shards drop under load), a second instance makes attempts too.
          const attempts = yield* Effect.forEach(instances, (i) => metric(i.url, "pp_attempts_total", { processor: "intraday_triggers" }))
          expect(attempts.filter((n) => n === 0).length).toBeGreaterThanOrEqual(1)
          const before = (yield* sandbox.stats).routes.screen.calls
          yield* Effect.sleep("2 seconds")
          const after = (yield* sandbox.stats).routes.screen.calls
          expect(after - before).toBe(0)

          // Recovery: the upstream is back (and slow), the open period (4 s) ends. One probe for the
          // whole cluster: while it is in flight, nobody else calls.
          // No traffic left (its retries would probe early), then past any open period.
          yield* waitFor(a.url, failing.id, (j) => j.status === "completed")
          yield* sandbox.setKnobs("screen", { errorRate: 0, latency: { kind: "fixed", ms: 1500 } })
          yield* Effect.sleep("7 seconds")
          yield* sandbox.reset
          const traffic = Effect.forEach(instances, (instance) =>
            Effect.flatMap(Client.make(instance.url), (c) =>
              retryOverloaded(
                c.batches.executeMultiple({
                  payload: Array.from({ length: 6 }, () => ({ triggerKey: "limit_up" })),
                  urlParams: { maxConcurrent: 3 },
                  headers: { prefer: "respond-async" }
                })
              )
            )
          )
          yield* traffic
          yield* Effect.sleep("1 second")
          expect((yield* sandbox.stats).routes.screen.calls).toBeLessThanOrEqual(1)
          // The probe succeeds; every instance closes.
          yield* Effect.forEach(instances, (instance) =>
            marketState(instance.url).pipe(
              Effect.filterOrFail((status) => status === "closed", () => "not closed yet"),
              Effect.tapError(() => Effect.ignore(traffic)),
              Effect.retry(Schedule.spaced(Duration.millis(1000)).pipe(Schedule.upTo(Duration.seconds(30))))
            )
          )
        }).pipe(Effect.provide(FetchHttpClient.layer), Effect.scoped, TestServices.provideLive),
      180_000
    )
  })
})
