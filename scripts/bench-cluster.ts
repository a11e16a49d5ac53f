/**
 * `npm run bench:cluster` — one 2,000-item job (20 ms per call, maxConcurrent 150 held cluster-wide)
 * through 1, 2 and 3 service instances sharing one PostgreSQL, each instance a compiled process
 * (`node dist/src/main.js`). The upstream is `scripts/stub-upstream.ts` (fixed latency, no limit of its
 * own; the scenario's "200 allowed in flight" is above the 150 asked for). PostgreSQL is brought up
 * for the run by the test harness (installed from Debian's packages if missing). Prints wall, wall /
 * ideal (ideal = 2,000 × 20 ms / 150), wall / floor and the speed-up over one instance; median of 3
 * runs each. Peers in the same run: p-limit over undici calling the upstream directly (no service: the
 * floor of this machine) and the service as one process on its embedded SQLite file.
 */
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { Effect } from "effect"
import { createDatabase, postgres } from "../test/support/postgres.js"
import { pLimitUndici } from "./support/peers.js"
import { freePort, root, startProcess, stop, upstreamEnv } from "./support/processes.js"
const ITEMS = 2000
const LATENCY_MS = 20
const MAX_CONCURRENT = 150
const RUNS = 3
const ideal = Math.ceil(ITEMS / MAX_CONCURRENT) * LATENCY_MS

const job = async (url: string, run: string, items: number) => {
  const posts = Array.from({ length: items }, (_, i) => ({ postId: `${run}-p${i}`, articleId: `${run}-a${i}`, kolSerial: "101" }))
  const t0 = performance.now()
  const response = await fetch(`${url}/api/interactions/fetch-all-interactions`, {
    signal: AbortSignal.timeout(120_000),
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ posts, maxConcurrent: MAX_CONCURRENT })
  })
  const body = (await response.json()) as { succeeded?: number }
  if (response.status !== 200 || body.succeeded !== items) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body).slice(0, 300)}`)
  const wall = performance.now() - t0
  console.log(`  ${run}: ${items} items in ${Math.round(wall)} ms`)
  return wall
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

interface Row {
  readonly setup: string
  readonly instances: number
  readonly wallMs: number
  readonly ratio: number
  readonly runs: string
}
const row = (setup: string, instances: number, walls: ReadonlyArray<number>): Row => {
  const wall = median(walls)
  return { setup, instances, wallMs: Math.round(wall), ratio: Number((wall / ideal).toFixed(3)), runs: walls.map(Math.round).join(" / ") }
}

/** `n` compiled service processes with `env`; `measure` gets the first one's URL. */
const withInstances = <A>(n: number, env: () => Promise<Record<string, string>>, measure: (url: string) => Effect.Effect<A>) =>
  Effect.gen(function* () {
    const instances = yield* Effect.promise(() =>
      Promise.all(
        Array.from({ length: n }, async () =>
          startProcess([path.join(root, "dist/src/main.js")], { HOST: "127.0.0.1", PORT: "0", ...(await env()) }, /listening on (http:\/\/\S+)/)
        )
      )
    )
    return yield* measure(instances[0]?.match ?? "").pipe(
      Effect.ensuring(Effect.promise(() => Promise.all(instances.map((i) => stop(i.child)))))
    )
  })

const runs = (url: string, label: string) =>
  Effect.gen(function* () {
    yield* Effect.promise(() => job(url, `warm-${label}`, 300))
    const walls: Array<number> = []
    for (let r = 0; r < RUNS; r++) walls.push(yield* Effect.promise(() => job(url, `${label}-${r}`, ITEMS)))
    return walls
  })

const program = Effect.gen(function* () {
  const server = yield* postgres
  console.log(`PostgreSQL ${server.version} on port ${server.port}`)
  const upstream = yield* Effect.promise(() =>
    startProcess([path.join(root, "dist/scripts/stub-upstream.js")], { LATENCY_MS: String(LATENCY_MS) }, /listening (\d+)/)
  )
  yield* Effect.addFinalizer(() => Effect.promise(() => stop(upstream.child)))
  const upstreamUrl = `http://127.0.0.1:${upstream.match}`
  const rows: Array<Row> = []

  // Peers, same machine, same upstream, same run: the cheapest client Node has (no service at all),
  // and the service as one process on its embedded SQLite file (no cluster).
  console.log("peer: p-limit + undici…")
  const articles = (run: string) => Array.from({ length: ITEMS }, (_, i) => `${run}-a${i}`)
  yield* Effect.promise(() => pLimitUndici(upstreamUrl, articles("warm-plimit").slice(0, 300), MAX_CONCURRENT))
  const plimit: Array<number> = []
  for (let r = 0; r < RUNS; r++) plimit.push(yield* Effect.promise(() => pLimitUndici(upstreamUrl, articles(`plimit-${r}`), MAX_CONCURRENT)))
  rows.push(row("p-limit + undici, no service (floor)", 0, plimit))

  console.log("peer: one instance on SQLite…")
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "pp-bench-cluster-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
  rows.push(row("service, embedded SQLite (single runner)", 1, yield* withInstances(1, async () => ({ DATA_DIR: dataDir, ...upstreamEnv(upstreamUrl) }), (url) => runs(url, "sqlite"))))

  for (const n of [1, 2, 3]) {
    console.log(`${n} instance(s) on PostgreSQL…`)
    const url = yield* createDatabase(server.url, `bench_cluster_${n}`)
    const env = async () => ({
      DATABASE_URL: url,
      RUNNER_HOST: "127.0.0.1",
      RUNNER_PORT: String(await freePort()),
      ...upstreamEnv(upstreamUrl)
    })
    // Shards settle after the runners join; then one warm-up job.
    const walls = yield* withInstances(n, env, (first) => Effect.zipRight(Effect.sleep("6 seconds"), runs(first, `pg${n}`)))
    rows.push(row(`service, PostgreSQL cluster`, n, walls))
  }
  const one = rows.find((r) => r.setup.includes("cluster"))?.wallMs ?? NaN
  const floor = rows[0]?.wallMs ?? NaN
  console.log(`\nbench:cluster — ${ITEMS} items × ${LATENCY_MS} ms, maxConcurrent ${MAX_CONCURRENT} cluster-wide, ideal ${ideal} ms (${os.cpus().length} cores)\n`)
  console.log("setup                                      inst   wall ms   /ideal   /floor   vs 1 pg   runs (ms)")
  for (const r of rows) {
    console.log(
      `${r.setup.padEnd(42)} ${String(r.instances).padStart(4)} ${String(r.wallMs).padStart(9)} ${r.ratio.toFixed(2).padStart(8)} ${(r.wallMs / floor).toFixed(2).padStart(8)} ${r.setup.includes("cluster") ? (one / r.wallMs).toFixed(2).padStart(9) : "        -"}   ${r.runs}`
    )
  }
  mkdirSync(path.join(root, "bench-results"), { recursive: true })
  writeFileSync(
    path.join(root, "bench-results/cluster-latest.json"),
    JSON.stringify({ at: new Date().toISOString(), cores: os.cpus().length, items: ITEMS, latencyMs: LATENCY_MS, maxConcurrent: MAX_CONCURRENT, idealMs: ideal, rows }, null, 2)
  )
}).pipe(Effect.scoped)

Effect.runPromise(program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
