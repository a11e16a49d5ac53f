/**
 * Instances leaving and joining mid-job: three real service processes on one PostgreSQL (a server
 * brought up by the test, each test its own database), one sandbox upstream in this process
 * (test/support/cluster.ts). A SIGKILLed instance's part of a job finishes elsewhere without
 * re-running finished items; a SIGTERMed one drains its calls, exits 0 and hands its part over; an
 * instance joining takes over shards with nothing run twice and the limit holding.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, TestServices } from "effect"
import * as Client from "../src/http/Client.js"
import { cluster, env, holdsShards, instance, itemsRun, posts, printLogs, submit, waitFor } from "./support/cluster.js"
import { eventually, metric } from "./support/requests.js"
import { Postgres } from "./support/postgres.js"

// One server for the file (a bring-up is initdb + start, several seconds on a loaded machine); each
// test has its own database on it.
layer(Postgres.layer, { timeout: "120 seconds" })("several instances on PostgreSQL: failover", (it) => {
  it.effect(
    "an instance SIGKILLed mid-job: the job completes on the others, finished items are not re-run",
    () =>
      Effect.gen(function* () {
        const { sandbox, instances } = yield* cluster(yield* Postgres, "cluster_kill")
        const [a, b, c] = instances
        if (a === undefined || b === undefined || c === undefined) return expect.fail("three instances")
        yield* sandbox.reset
        const id = yield* submit(a.url, posts(60, "kill"), 6)
        const partial = yield* waitFor(b.url, id, (j) => j.completed >= 15)
        yield* c.kill("SIGKILL")
        const job = yield* waitFor(b.url, id, (j) => j.status === "completed").pipe(
          Effect.tapError(() =>
            Effect.gen(function* () {
              const client = yield* Client.make(b.url)
              const now = yield* client.jobs.get({ path: { id }, urlParams: {} })
              console.log("STUCK", now.status, now.completed, "\n--- A\n", a.output().slice(-6000), "\n--- B\n", b.output().slice(-6000))
            }).pipe(Effect.ignore)
          )
        )
        expect(job.succeeded).toBe(60)
        const calls = (yield* sandbox.stats).routes.interactions.byId
        for (const done of partial.results) expect(calls[`kill-a${done.index}`]).toBe(1)
      }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
    180_000
  )

  it.effect(
    "an instance SIGTERMed mid-job: it exits 0 after its attempts finish, the others complete the job, nothing runs twice",
    () =>
      Effect.gen(function* () {
        const { sandbox, instances } = yield* cluster(yield* Postgres, "cluster_term")
        yield* sandbox.reset
        const [first] = instances
        if (first === undefined) return expect.fail("three instances")
        const id = yield* submit(first.url, posts(90, "term"), 6)
        yield* waitFor(first.url, id, (j) => j.completed >= 15)
        // The signal must come while the instance has calls in flight. From now on every call takes
        // 1.5 s; once the quick ones have ended, a part that is still running cannot end for ~1 s —
        // the victim is an instance running one then, and the signal reaches it well before.
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 1500 } })
        yield* Effect.sleep("300 millis")
        // The victim: an instance that reports forum calls in flight right now (its own gauge).
        const victim = yield* eventually(
          Effect.forEach(instances, (i) => metric(i.url, "pp_upstream_in_flight", { upstream: "forum" })).pipe(
            Effect.map((inFlight) => instances.find((_, n) => (inFlight[n] ?? 0) > 0)),
            Effect.filterOrFail((found) => found !== undefined, () => "no instance has calls in flight")
          ),
          "10 seconds"
        )
        const [other, third] = instances.filter((i) => i !== victim)
        if (other === undefined || third === undefined) return expect.fail("three instances")
        yield* victim.kill("SIGTERM")
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 150 } })
        const show = () => printLogs({ victim, other, third }, /^\[|^  (job|part|calling|waitedMs):/)
        const code = yield* victim.exited.pipe(Effect.timeout("30 seconds"), Effect.tapError(() => Effect.sync(show)))
        const job = yield* waitFor(other.url, id, (j) => j.status === "completed").pipe(
          Effect.tapError(() => Effect.sync(show))
        )
        const stats = (yield* sandbox.stats).routes.interactions
        const calls = stats.byId
        const twice = Object.entries(calls).filter(([, n]) => n !== 1)
        if (code !== 0 || job.succeeded !== 90 || twice.length > 0 || Object.keys(calls).length !== 90 || stats.aborted > 0) {
          console.log("exit", code, "succeeded", job.succeeded, "aborted", stats.aborted, "called more than once", JSON.stringify(twice))
          show()
        }
        expect(code).toBe(0)
        // The drain: the calls the victim had in flight at the signal ran to the end (none was cut
        // off) and their results were stored (none ran again below).
        expect(stats.aborted).toBe(0)
        expect(job.succeeded).toBe(90)
        expect(twice).toEqual([])
        expect(Object.keys(calls)).toHaveLength(90)
        expect(stats.peakInFlight).toBeLessThanOrEqual(6)
      }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
    180_000
  )

  it.effect(
    "an instance joining mid-job takes over shards: the moved parts finish their in-flight calls first, nothing runs twice, the limit holds",
    () =>
      Effect.gen(function* () {
        const { sandbox, instances, url } = yield* cluster(yield* Postgres, "cluster_join", 2)
        const [a, b] = instances
        if (a === undefined || b === undefined) return expect.fail("two instances")
        yield* sandbox.reset
        const id = yield* submit(a.url, posts(200, "join"), 4)
        const early = () => printLogs({ A: a, B: b }, /^\[|^  (job|part|calling|waitedMs):/)
        yield* waitFor(b.url, id, (j) => j.completed >= 10).pipe(Effect.tapError(() => Effect.sync(early)))
        // Slow calls while the newcomer starts (which may take long on a loaded machine): the job
        // cannot end before it has joined, and the parts it takes over have calls in flight.
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 2000 } })
        const c = yield* instance(url, sandbox.url)
        yield* holdsShards(c)
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 150 } })
        const show = () => printLogs({ A: a, B: b, C: c }, /^\[|^  (job|part|calling|waitedMs):/)
        const job = yield* waitFor(b.url, id, (j) => j.status === "completed").pipe(Effect.tapError(() => Effect.sync(show)))
        const stats = (yield* sandbox.stats).routes.interactions
        const twice = Object.entries(stats.byId).filter(([, n]) => n !== 1)
        if (twice.length > 0 || stats.aborted > 0) show()
        expect(job.succeeded).toBe(200)
        expect(twice).toEqual([])
        // The moved parts' calls in flight ran to the end on the runner they left (none was cut off).
        expect(stats.aborted).toBe(0)
        // The cluster-wide limit holds while parts and permit shares move to the newcomer.
        expect(stats.peakInFlight).toBeLessThanOrEqual(4)
        // The newcomer ran some of the job's items.
        expect(yield* itemsRun(c, "interactions")).toBeGreaterThan(0)
      }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
    180_000
  )

  it.effect(
    "a new owner that finds the shard's messages still marked read (the cluster's reset of them lost) resumes the job within CLUSTER_MESSAGE_REARM_INTERVAL",
    () =>
      Effect.gen(function* () {
        const extra = { CLUSTER_MESSAGE_REARM_INTERVAL: "2 seconds", JOB_PARTITIONS: "2" }
        const { sandbox, instances, url } = yield* cluster(yield* Postgres, "cluster_rearm", 1, extra)
        const [a] = instances
        if (a === undefined) return expect.fail("one instance")
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 1000 } })
        yield* sandbox.reset
        const id = yield* submit(a.url, posts(8, "rearm"), 2)
        // Running: the job's and its parts' messages have been read (marked) by this runner.
        const partial = yield* waitFor(a.url, id, (j) => j.completed >= 1)
        yield* a.kill("SIGKILL")
        // The cluster's reset of the marks (when the next runner takes the shards) is lost, as when
        // that write fails or times out: a trigger keeps a mark the cluster would clear.
        const sql = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1, applicationName: "rearm-test" })).pipe(
          Effect.map((context) => Context.get(context, PgClient.PgClient))
        )
        yield* sql.unsafe(`CREATE FUNCTION keep_read_mark() RETURNS trigger AS $$
          BEGIN IF NEW.last_read IS NULL AND OLD.last_read IS NOT NULL THEN NEW.last_read := OLD.last_read; END IF; RETURN NEW; END
          $$ LANGUAGE plpgsql`)
        yield* sql.unsafe(`CREATE TRIGGER keep_read_mark BEFORE UPDATE ON cluster_messages FOR EACH ROW EXECUTE FUNCTION keep_read_mark()`)
        yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 50 } })
        const b = yield* instance(url, sandbox.url, extra)
        // Without the re-arm the parts would wait for their marks to be 10 minutes old.
        const job = yield* waitFor(b.url, id, (j) => j.status === "completed").pipe(
          Effect.tapError(() => Effect.sync(() => printLogs({ B: b }, /./)))
        )
        expect(job.succeeded).toBe(8)
        expect(yield* metric(b.url, "pp_cluster_messages_rearmed_total")).toBeGreaterThan(0)
        const calls = (yield* sandbox.stats).routes.interactions.byId
        for (const done of partial.results) expect(calls[`rearm-a${done.index}`]).toBe(1)
      }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
    180_000
  )
})
