/**
 * `npm run bench:cluster` — one 2,000-item job (20 ms per call, maxConcurrent 150 held cluster-wide)
 * through 1, 2 and 3 service instances sharing one PostgreSQL, each instance a compiled process
 * (`node dist/src/main.js`). The upstream is `scripts/stub-upstream.ts` (fixed latency, no limit of its
 * own; the scenario's "200 allowed in flight" is above the 150 asked for). PostgreSQL is brought up
 * for the run by the test harness (installed from Debian's packages if missing). Prints wall, wall /
 * ideal (ideal = 2,000 × 20 ms / 150) and the speed-up over one instance; median of 3 runs each.
 */
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { mkdirSync, writeFileSync } from "node:fs"
import { Effect } from "effect"
import { createDatabase, postgres } from "../test/support/postgres.js"
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

const program = Effect.gen(function* () {
  const server = yield* postgres
  console.log(`PostgreSQL ${server.version} on port ${server.port}`)
  const upstream = yield* Effect.promise(() =>
    startProcess([path.join(root, "dist/scripts/stub-upstream.js")], { LATENCY_MS: String(LATENCY_MS) }, /listening (\d+)/)
  )
  yield* Effect.addFinalizer(() => Effect.promise(() => stop(upstream.child)))
  const upstreamUrl = `http://127.0.0.1:${upstream.match}`
  const rows: Array<{ instances: number; wallMs: number; ratio: number; runs: string }> = []
  for (const n of [1, 2, 3]) {
    console.log(`${n} instance(s)…`)
    const url = yield* createDatabase(server.url, `bench_cluster_${n}`)
    const instances = yield* Effect.promise(() =>
      Promise.all(
        Array.from({ length: n }, async () =>
          startProcess(
            [path.join(root, "dist/src/main.js")],
            {
              HOST: "127.0.0.1",
              PORT: "0",
              DATABASE_URL: url,
              RUNNER_HOST: "127.0.0.1",
              RUNNER_PORT: String(await freePort()),
              ...upstreamEnv(upstreamUrl)
            },
            /listening on (http:\/\/\S+)/
          )
        )
      )
    )
    try {
      // Shards settle after the runners join; then one warm-up job.
      yield* Effect.sleep("6 seconds")
      const first = instances[0]?.match ?? ""
      yield* Effect.promise(() => job(first, `warm${n}`, 300))
      const walls: Array<number> = []
      for (let r = 0; r < RUNS; r++) walls.push(yield* Effect.promise(() => job(first, `run${n}-${r}`, ITEMS)))
      const sorted = [...walls].sort((a, b) => a - b)
      const wall = sorted[Math.floor(sorted.length / 2)] ?? NaN
      rows.push({ instances: n, wallMs: Math.round(wall), ratio: Number((wall / ideal).toFixed(3)), runs: walls.map(Math.round).join(" / ") })
    } finally {
      yield* Effect.promise(() => Promise.all(instances.map((i) => stop(i.child))))
    }
  }
  const one = rows[0]?.wallMs ?? NaN
  console.log(`\nbench:cluster — ${ITEMS} items × ${LATENCY_MS} ms, maxConcurrent ${MAX_CONCURRENT} cluster-wide, ideal ${ideal} ms (${os.cpus().length} cores)\n`)
  console.log("instances   wall ms   wall/ideal   speed-up vs 1   runs (ms)")
  for (const r of rows) {
    console.log(`${String(r.instances).padStart(9)} ${String(r.wallMs).padStart(9)} ${String(r.ratio).padStart(12)} ${(one / r.wallMs).toFixed(2).padStart(15)}   ${r.runs}`)
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
