/**
 * Several service instances on one PostgreSQL database, for the cluster tests (`cluster.*.test.ts`):
 * real service processes (spawned) against one sandbox upstream in the test process, whose counters
 * see every instance's calls. What an instance did is read from what it reports — the job through
 * `GET /api/jobs/{id}`, its counters and gauges through `GET /metrics` — never from its logs, which
 * are printed when a test fails.
 */
import { FetchHttpClient } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freePort } from "../../scripts/support/processes.js"
import * as Client from "../../src/http/Client.js"
import type { JobDetail } from "../../src/jobs/Model.js"
import * as Sandbox from "../../src/sandbox/Sandbox.js"
import { eventually, metric, retryOverloaded, waitForJob } from "./requests.js"
import { createDatabase, type PostgresServer } from "./postgres.js"
import * as Service from "./service.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-cluster-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

export const posts = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => ({ postId: `${prefix}-p${i}`, articleId: `${prefix}-a${i}`, kolSerial: "101" }))

/** One service instance on `url` (a PostgreSQL database), against the sandbox. */
export const instance = (url: string, sandboxUrl: string, extra: Readonly<Record<string, string>> = {}) =>
  Effect.gen(function* () {
    const dataDir = yield* tempDir
    return yield* Service.start({
      DATABASE_URL: url,
      DATA_DIR: dataDir,
      RUNNER_HOST: "127.0.0.1",
      RUNNER_PORT: String(yield* Effect.promise(freePort)),
      // Not shorter: the cluster gives each shard-lock statement a third of this (at most 2 s), and a
      // runner whose statement misses it drops every shard. At 3 s (1 s each) a loaded 2-core machine
      // missed it again and again (an instance starting beside two others is enough): runners lost
      // their shards, restarted in-process (CLUSTER_RECOVERY_TIMEOUT) and a job stood still for over
      // a minute. A SIGKILLed runner's shard locks go with its database session, not by expiry.
      RUNNER_LOCK_EXPIRATION: "6 seconds",
      CLUSTER_RECOVERY_TIMEOUT: "10 seconds",
      BREAKER_RECOVERY_TIMEOUT: "4 seconds",
      // 24 parts over 3 runners: each instance gets some (with 12, one in ~70 runs got none).
      JOB_PARTITIONS: "24",
      // Every job as 24 parts, however small (by default a part per 50 items): the tests' jobs are
      // small, and what they check is parts spread over the instances.
      JOB_MIN_ITEMS_PER_PART: "1",
      ...Service.sandboxEnv(sandboxUrl),
      ...extra
    })
  })

/** Until `instance` reports that its runner holds shards (`effect_cluster_shards`, from `/metrics`). */
export const holdsShards = (instance: Service.ServiceProcess) =>
  eventually(
    metric(instance.url, "effect_cluster_shards").pipe(Effect.filterOrFail((held) => held > 0, () => "no shard yet")),
    "60 seconds"
  )

/** Items this instance finished for `processor` (`pp_items_total`, from `/metrics`). */
export const itemsRun = (instance: Service.ServiceProcess, processor: string) =>
  metric(instance.url, "pp_items_total", { processor })

/**
 * `n` instances (3 by default) on a fresh database `database` of `server`, against the sandbox. The
 * server is the file's shared one, or one of the test's own when the test stops it (an outage) and
 * must not take the other tests' server down with it.
 */
export const cluster = (
  server: PostgresServer,
  database: string,
  n = 3,
  /** More environment for every instance, or per instance (by its index). */
  extra: Readonly<Record<string, string>> | ((i: number) => Readonly<Record<string, string>>) = {}
) =>
  Effect.gen(function* () {
    const url = yield* createDatabase(server.url, database)
    const sandbox = yield* Sandbox.Sandbox
    const instances = yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) => instance(url, sandbox.url, typeof extra === "function" ? extra(i) : extra),
      // All at once, on an empty database: table creation must not race.
      { concurrency: "unbounded" }
    )
    // Each runner that joins takes over some shards: the job starts once every runner holds some.
    yield* Effect.forEach(instances, holdsShards, { concurrency: "unbounded", discard: true })
    return { sandbox, instances, url }
  })

/** Prints each instance's log lines that match `pattern`: the story of a failing test. */
export const printLogs = (instances: Readonly<Record<string, Service.ServiceProcess>>, pattern: RegExp) => {
  for (const [name, instance] of Object.entries(instances)) {
    const lines = instance.output().split("\n").filter((line) => pattern.test(line))
    console.log(`--- ${name}\n${lines.join("\n")}`)
  }
}

/** Polls the job through `url` until `done` holds (at most 90 s: a loaded 2-core machine). */
export const waitFor = (url: string, id: string, done: (job: JobDetail) => boolean) => waitForJob(url, id, done, "90 seconds")

export const submit = (url: string, items: ReadonlyArray<{ postId: string; articleId: string; kolSerial: string }>, maxConcurrent: number) =>
  Effect.gen(function* () {
    const client = yield* Client.make(url)
    const accepted = yield* retryOverloaded(
      client.batches.fetchAllInteractions({
        payload: { posts: items, maxConcurrent },
        headers: { prefer: "respond-async" }
      })
    )
    return accepted.id
  })

/** The sandbox (interactions at a fixed 150 ms) and an HTTP client, for each test. */
export const env = Layer.merge(Sandbox.layer({ seed: 5, knobs: { interactions: { latency: { kind: "fixed", ms: 150 } } } }), FetchHttpClient.layer)
