/**
 * `npm run bench:cluster` — one 2,000-item job (maxConcurrent 150 held cluster-wide) through 1, 2
 * and 3 service instances sharing one PostgreSQL, each instance a compiled process
 * (`node dist/src/main.js`); C1 at 20 ms per call (the issue's scenario), C2 at 200 ms. The upstream is
 * `scripts/stub-upstream.ts` (fixed latency, no limit of its own; the scenario's "200 allowed in
 * flight" is above the 150 asked for; it reports the peak in flight, which must stay ≤ 150).
 * PostgreSQL is brought up for the run by the test harness (installed from Debian's packages if
 * missing). Prints wall, wall / ideal (ideal = ⌈2,000 / 150⌉ × latency), wall / floor and the speed-up
 * over one instance; median of 3 runs each. Peers in the same run: p-limit over undici calling the upstream directly (no service: the
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
const MAX_CONCURRENT = 150
const RUNS = 3

interface Scenario {
  readonly id: string
  readonly latencyMs: number
}
/** C1 is the issue's scenario (CPU-bound on a small machine); C2 the same job against a slow upstream. */
const scenarios: ReadonlyArray<Scenario> = [
  { id: "C1", latencyMs: 20 },
  { id: "C2", latencyMs: 200 }
]
const idealMs = (s: Scenario) => Math.ceil(ITEMS / MAX_CONCURRENT) * s.latencyMs

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
  readonly scenario: string
  readonly setup: string
  readonly instances: number
  readonly wallMs: number
  readonly ratio: number
  /** Most calls the upstream saw in flight at once over the runs (the limit is 150). */
  readonly peakInFlight: number
  readonly runs: string
}

interface Upstream {
  readonly url: string
  readonly set: (latencyMs: number) => Promise<void>
  readonly stats: () => Promise<{ readonly calls: number; readonly peakInFlight: number }>
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

/** Every scenario through `run` (one job → wall ms): a warm-up, then RUNS timed runs each. */
const allScenarios = (upstream: Upstream, setup: string, instances: number, run: (label: string, items: number) => Promise<number>) =>
  Effect.gen(function* () {
    const rows: Array<Row> = []
    for (const s of scenarios) {
      yield* Effect.promise(() => upstream.set(s.latencyMs))
      yield* Effect.promise(() => run(`warm-${s.id}`, 300))
      const walls: Array<number> = []
      for (let r = 0; r < RUNS; r++) walls.push(yield* Effect.promise(() => run(`${s.id}-${r}`, ITEMS)))
      const { peakInFlight } = yield* Effect.promise(upstream.stats)
      const wall = median(walls)
      rows.push({
        scenario: s.id,
        setup,
        instances,
        wallMs: Math.round(wall),
        ratio: Number((wall / idealMs(s)).toFixed(3)),
        peakInFlight,
        runs: walls.map(Math.round).join(" / ")
      })
    }
    return rows
  })

const program = Effect.gen(function* () {
  const server = yield* postgres
  console.log(`PostgreSQL ${server.version} on port ${server.port}`)
  const stub = yield* Effect.promise(() => startProcess([path.join(root, "dist/scripts/stub-upstream.js")], {}, /listening (\d+)/))
  yield* Effect.addFinalizer(() => Effect.promise(() => stop(stub.child)))
  const upstreamUrl = `http://127.0.0.1:${stub.match}`
  const upstream: Upstream = {
    url: upstreamUrl,
    set: async (ms) => void (await fetch(`${upstreamUrl}/__latency/${ms}`, { method: "PUT" })),
    stats: async () => (await (await fetch(`${upstreamUrl}/__stats`)).json()) as { calls: number; peakInFlight: number }
  }
  const rows: Array<Row> = []

  // Peers, same machine, same upstream, same run: the cheapest client Node has (no service at all),
  // and the service as one process on its embedded SQLite file (no cluster).
  console.log("peer: p-limit + undici…")
  const articles = (run: string, items: number) => Array.from({ length: items }, (_, i) => `${run}-a${i}`)
  rows.push(...(yield* allScenarios(upstream, "p-limit + undici, no service (floor)", 0, (run, items) => pLimitUndici(upstreamUrl, articles(run, items), MAX_CONCURRENT))))

  console.log("peer: one instance on SQLite…")
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "pp-bench-cluster-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
  rows.push(
    ...(yield* withInstances(1, async () => ({ DATA_DIR: dataDir, ...upstreamEnv(upstreamUrl) }), (url) =>
      allScenarios(upstream, "service, embedded SQLite (single runner)", 1, (run, items) => job(url, `sqlite-${run}`, items))
    ))
  )

  for (const n of [1, 2, 3]) {
    console.log(`${n} instance(s) on PostgreSQL…`)
    const url = yield* createDatabase(server.url, `bench_cluster_${n}`)
    const env = async () => ({
      DATABASE_URL: url,
      RUNNER_HOST: "127.0.0.1",
      RUNNER_PORT: String(await freePort()),
      ...upstreamEnv(upstreamUrl)
    })
    // Shards settle after the runners join.
    rows.push(
      ...(yield* withInstances(n, env, (first) =>
        Effect.zipRight(
          Effect.sleep("6 seconds"),
          allScenarios(upstream, "service, PostgreSQL cluster", n, (run, items) => job(first, `pg${n}-${run}`, items))
        )
      ))
    )
  }

  console.log(`\nbench:cluster — ${ITEMS} items, maxConcurrent ${MAX_CONCURRENT} cluster-wide (${os.cpus().length} cores), median of ${RUNS}`)
  for (const s of scenarios) {
    const mine = rows.filter((r) => r.scenario === s.id)
    const floor = mine[0]?.wallMs ?? NaN
    const one = mine.find((r) => r.setup.includes("cluster"))?.wallMs ?? NaN
    console.log(`\n${s.id}: ${s.latencyMs} ms per call, ideal ${idealMs(s)} ms`)
    console.log("setup                                      inst   wall ms   /ideal   /floor   vs 1 pg   peak   runs (ms)")
    for (const r of mine) {
      console.log(
        `${r.setup.padEnd(42)} ${String(r.instances).padStart(4)} ${String(r.wallMs).padStart(9)} ${r.ratio.toFixed(2).padStart(8)} ${(r.wallMs / floor).toFixed(2).padStart(8)} ${r.setup.includes("cluster") ? (one / r.wallMs).toFixed(2).padStart(9) : "        -"} ${String(r.peakInFlight).padStart(6)}   ${r.runs}`
      )
    }
  }
  const over = rows.filter((r) => r.peakInFlight > MAX_CONCURRENT)
  if (over.length > 0) {
    console.error(`LIMIT BROKEN: ${over.map((r) => `${r.scenario} ${r.setup} ×${r.instances}: ${r.peakInFlight}`).join("; ")}`)
    process.exitCode = 1
  }
  mkdirSync(path.join(root, "bench-results"), { recursive: true })
  writeFileSync(
    path.join(root, "bench-results/cluster-latest.json"),
    JSON.stringify({ at: new Date().toISOString(), cores: os.cpus().length, items: ITEMS, maxConcurrent: MAX_CONCURRENT, scenarios: scenarios.map((s) => ({ ...s, idealMs: idealMs(s) })), rows }, null, 2)
  )
}).pipe(Effect.scoped)

Effect.runPromise(program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
