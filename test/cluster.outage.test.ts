/**
 * The database restarts mid-job under running instances: real service processes on a PostgreSQL
 * server of each test's own (it is stopped and started again), one sandbox upstream in this process
 * (test/support/cluster.ts). The job completes, nothing stored before the outage runs again, and every
 * instance serves and runs new jobs afterwards.
 */
import { expect, it } from "@effect/vitest"
import { Effect, TestServices } from "effect"
import * as Client from "../src/http/Client.js"
import { cluster, env, posts, printLogs, submit, waitFor } from "./support/cluster.js"
import { postgres } from "./support/postgres.js"

/**
 * The database restarts mid-job. Every session ends (like a failover), nothing answers for 5 s;
 * the instances keep what finished meanwhile and store it once the database is back. A runner
 * that cannot take its shards back (seen with one instance: the cluster's forced shard release
 * waits forever) restarts its service in-process (`Cluster.watchdog`, 10 s here).
 */
const outage = (database: string, n: number, items: number, maxConcurrent: number, latencyMs: number) =>
  Effect.gen(function* () {
    // A server of the test's own: stopping it must not take another test's server down.
    const server = yield* postgres
    const { sandbox, instances } = yield* cluster(server, database, n)
    yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: latencyMs } })
    const [a] = instances
    const b = instances[1] ?? a
    if (a === undefined || b === undefined) return expect.fail("instances")
    yield* sandbox.reset
    const id = yield* submit(a.url, posts(items, database), maxConcurrent)
    const before = yield* waitFor(b.url, id, (j) => j.completed >= 15)
    yield* server.outage("5 seconds")
    const show = () => printLogs({ A: a, B: b }, /^\[(?!.*could not (read shared|renew|store))/)
    const job = yield* waitFor(b.url, id, (j) => j.status === "completed").pipe(Effect.tapError(() => Effect.sync(show)))
    expect(job.succeeded).toBe(items)
    const calls = (yield* sandbox.stats).routes.interactions.byId
    expect(Object.keys(calls)).toHaveLength(items)
    // What was stored before the outage never runs again.
    const again = before.results.filter((done) => calls[`${database}-a${done.index}`] !== 1).map((done) => done.index)
    if (again.length > 0) {
      console.log("stored before the outage, called again:", JSON.stringify(again))
      show()
    }
    expect(again).toEqual([])
    // Every instance still serves, and runs new jobs.
    for (const instance of instances) {
      const client = yield* Client.make(instance.url)
      expect((yield* client.jobs.get({ path: { id }, urlParams: {} })).status).toBe("completed")
      const next = yield* submit(instance.url, posts(3, `${database}-next-${instance.url.slice(-5)}`), 3)
      expect((yield* waitFor(instance.url, next, (j) => j.status === "completed")).succeeded).toBe(3)
    }
  }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive)

it.effect(
  "the database restarts mid-job (two instances): they take their parts back, the job completes, nothing stored runs again",
  () => outage("cluster_outage", 2, 90, 6, 150),
  180_000
)

it.effect(
  "the database restarts mid-job (one instance): its runner comes back (restarting in-process if its cluster stalled), the job completes",
  () => outage("cluster_outage_one", 1, 200, 4, 200),
  180_000
)
