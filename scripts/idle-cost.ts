/**
 * `npx tsx scripts/idle-cost.ts` — what an idle service instance does per second, attributed (issue 13).
 * Starts compiled instances (`<dist>/src/main.js`) with no job: N instances on one PostgreSQL (brought
 * up by the test harness, with pg_stat_statements) and one on its embedded SQLite file. After they
 * settle, each instance counts for `--seconds` (default 30) every SQL statement it sends, by text, and
 * every timer it arms, by delay (`scripts/support/countStatements.mjs`, preloaded with `--import`;
 * each `Effect.sleep` / `Schedule.spaced` step of a polling loop is one timer), while its CPU
 * (`/proc/<pid>/stat`) and PostgreSQL's are read before and after. Prints, per setup, CPU ms/s per
 * instance, the statements per second per instance with PostgreSQL's time for each, and the timers
 * per second; saves the whole as JSON (`--out`, default `bench-results/idle-cost-latest.json`).
 *
 * Options: `--dist <dir>` (another build, for A/B), `--instances 1,3` (cluster sizes, default 1),
 * `--no-sqlite`, `--settle <s>` (wait after start, default 45: V8 compiles the start-up's code on
 * other threads for the first ~30-60 s, which a shorter wait counts as idle cost), `--logs <dir>` (each instance's output), `--node-arg <flag>` (repeatable, e.g. `--trace-gc`), `--env K=V` (repeatable: extra environment for every instance, e.g. a poll interval
 * turned off to see what it costs).
 */
import os from "node:os"
import path from "node:path"
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { createDatabase, postgres, withDatabase } from "../test/support/postgres.js"
import { freePort, root, startProcess, stop, upstreamEnv } from "./support/processes.js"
import { enableStatementStats, pgAt, postmasterPid } from "./support/pgServer.js"
import { procCpuUs, procTreeCpuUs } from "./support/procCpu.js"

/** CPU µs of the process's main thread alone (`/proc/<pid>/task/<pid>/stat`): the JavaScript thread. */
const mainThreadCpuUs = (pid: number | undefined): number => {
  if (pid === undefined) return NaN
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch {
    return NaN
  }
}

const argv = process.argv.slice(2)
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const DIST = arg("dist") ?? "dist"
const SECONDS = Number(arg("seconds") ?? 30)
const SIZES = (arg("instances") ?? "1").split(",").map(Number)
const SQLITE = !argv.includes("--no-sqlite")
const OUT = arg("out") ?? "bench-results/idle-cost-latest.json"
const EXTRA_ENV = Object.fromEntries(
  argv.flatMap((a, i) => (a === "--env" ? [argv[i + 1] ?? ""] : [])).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])
)
/** After start: V8's compiler and GC threads are still busy with the start-up's code for ~30-60 s. */
const LOGS = arg("logs")
const NODE_ARGS = argv.flatMap((a, i) => (a === "--node-arg" ? [argv[i + 1] ?? ""] : []))
const SETTLE_MS = Number(arg("settle") ?? 45) * 1000
const PRELOAD = path.join(root, "scripts/support/countStatements.mjs")

const Counts = Schema.Struct({
  pg: Schema.Record({ key: Schema.String, value: Schema.Number }),
  sqlite: Schema.Record({ key: Schema.String, value: Schema.Number }),
  sqlitePrepare: Schema.Record({ key: Schema.String, value: Schema.Number }),
  timers: Schema.Record({ key: Schema.String, value: Schema.Number })
})
type Counts = typeof Counts.Type
const decodeCounts = Schema.decodeUnknownSync(Schema.parseJson(Counts))

const PgStatement = Schema.Struct({ calls: Schema.Number, ms: Schema.Number, query: Schema.String })
const decodeStatements = Schema.decodeUnknown(Schema.Array(PgStatement))

interface Instance {
  readonly pid: number | undefined
  readonly file: string
  readonly signal: () => void
}

const snapshot = async (instances: ReadonlyArray<Instance>): Promise<ReadonlyArray<Counts>> => {
  for (const i of instances) rmSync(i.file, { force: true })
  for (const i of instances) i.signal()
  // A busy instance may take a while to run the signal handler.
  for (let waited = 0; waited < 20_000 && !instances.every((i) => existsSync(i.file)); waited += 100) {
    await new Promise((r) => setTimeout(r, 100))
  }
  await new Promise((r) => setTimeout(r, 100))
  return instances.map((i) => decodeCounts(readFileSync(i.file, "utf8")))
}

/** Per second, per instance (averaged over instances), of `after - before` for one kind of count. */
const rates = (before: ReadonlyArray<Counts>, after: ReadonlyArray<Counts>, kind: keyof Counts, seconds: number) => {
  const sum = new Map<string, number>()
  after.forEach((a, i) => {
    for (const [k, v] of Object.entries(a[kind])) sum.set(k, (sum.get(k) ?? 0) + v - (before[i]?.[kind][k] ?? 0))
  })
  return [...sum.entries()]
    .map(([key, n]) => ({ key, perSecond: Math.round((n / seconds / after.length) * 100) / 100 }))
    .filter((r) => r.perSecond > 0)
    .sort((a, b) => b.perSecond - a.perSecond)
}

const measure = (label: string, n: number, env: () => Promise<Record<string, string>>, options: { readonly postmaster?: () => number | undefined; readonly pgStats?: SqlClient.SqlClient; readonly database?: string }) =>
  Effect.gen(function* () {
    const dir = mkdtempSync(path.join(os.tmpdir(), "pp-idle-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    const started = yield* Effect.promise(() =>
      Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const file = path.join(dir, `counts-${i}.json`)
          const p = await startProcess(
            [...NODE_ARGS, "--import", PRELOAD, path.join(root, DIST, "src/main.js")],
            { HOST: "127.0.0.1", PORT: "0", COUNT_STATEMENTS_FILE: file, ...(await env()), ...EXTRA_ENV },
            /listening on (http:\/\/\S+)/
          )
          if (LOGS !== undefined) {
            mkdirSync(LOGS, { recursive: true })
            const log = createWriteStream(path.join(LOGS, `${label.replace(/\W+/g, "-")}-${n}-${i}.log`))
            p.child.stdout?.pipe(log)
            p.child.stderr?.pipe(log)
          }
          return { p, file }
        })
      )
    )
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all(started.map(({ p }) => stop(p.child)))))
    const instances: ReadonlyArray<Instance> = started.map(({ p, file }) => ({ pid: p.child.pid, file, signal: () => void p.child.kill("SIGUSR2") }))
    yield* Effect.sleep(SETTLE_MS)
    if (options.pgStats !== undefined) yield* Effect.orDie(options.pgStats`SELECT pg_stat_statements_reset()`)
    const before = yield* Effect.promise(() => snapshot(instances))
    const cpu0 = instances.map((i) => procCpuUs(i.pid) ?? NaN)
    const main0 = instances.map((i) => mainThreadCpuUs(i.pid))
    const pg0 = procTreeCpuUs(options.postmaster?.())
    const t0 = performance.now()
    yield* Effect.sleep(SECONDS * 1000)
    const seconds = (performance.now() - t0) / 1000
    const cpu1 = instances.map((i) => procCpuUs(i.pid) ?? NaN)
    const main1 = instances.map((i) => mainThreadCpuUs(i.pid))
    const pg1 = procTreeCpuUs(options.postmaster?.())
    const after = yield* Effect.promise(() => snapshot(instances))
    const server =
      options.pgStats === undefined
        ? []
        : yield* options.pgStats`SELECT calls::float8 AS calls, total_exec_time AS ms, regexp_replace(query, '\\s+', ' ', 'g') AS query
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${options.database ?? ""}) ORDER BY calls DESC`.pipe(
            Effect.flatMap(decodeStatements),
            Effect.orDie
          )
    const cpuMsPerS = cpu1.map((c, i) => Math.round(((c - (cpu0[i] ?? NaN)) / 1000 / seconds) * 10) / 10)
    const mainThreadMsPerS = main1.map((c, i) => Math.round(((c - (main0[i] ?? NaN)) / 1000 / seconds) * 10) / 10)
    const postgresMsPerS = pg0 === undefined || pg1 === undefined ? undefined : Math.round(((pg1 - pg0) / 1000 / seconds) * 10) / 10
    return {
      label,
      instances: n,
      seconds: Math.round(seconds * 10) / 10,
      cpuMsPerS,
      mainThreadMsPerS,
      postgresMsPerS,
      statements: rates(before, after, label.startsWith("sqlite") ? "sqlite" : "pg", seconds),
      sqlitePrepares: rates(before, after, "sqlitePrepare", seconds),
      timers: rates(before, after, "timers", seconds),
      postgresStatements: server
        .filter((s) => !s.query.includes("pg_stat_statements"))
        .map((s) => ({ perSecond: Math.round((s.calls / seconds) * 100) / 100, meanMs: Math.round((s.ms / Math.max(1, s.calls)) * 1000) / 1000, query: s.query.slice(0, 160) }))
    }
  }).pipe(Effect.scoped)

type Result = Effect.Effect.Success<ReturnType<typeof measure>>

const print = (r: Result) => {
  console.log(`\n${r.label} × ${r.instances}, ${r.seconds} s idle: CPU ms/s per instance ${r.cpuMsPerS.join(" + ")} (main thread ${r.mainThreadMsPerS.join(" + ")})${r.postgresMsPerS === undefined ? "" : `, PostgreSQL ${r.postgresMsPerS}`}`)
  console.log("  statements sent per second, per instance:")
  for (const s of r.statements) console.log(`    ${s.perSecond.toFixed(2).padStart(7)}  ${s.key.slice(0, 150)}`)
  if (r.sqlitePrepares.length > 0) {
    console.log("  SQLite prepare() calls per second (a statement prepared again instead of taken from the cache):")
    for (const s of r.sqlitePrepares) console.log(`    ${s.perSecond.toFixed(2).padStart(7)}  ${s.key.slice(0, 150)}`)
  }
  if (r.postgresStatements.length > 0) {
    console.log("  PostgreSQL, all instances (pg_stat_statements): calls/s, mean ms, statement")
    for (const s of r.postgresStatements.slice(0, 25)) console.log(`    ${s.perSecond.toFixed(2).padStart(7)} ${s.meanMs.toFixed(3).padStart(8)}  ${s.query.slice(0, 140)}`)
  }
  console.log("  timers armed per second, per instance (by delay):")
  for (const t of r.timers.slice(0, 20)) console.log(`    ${t.perSecond.toFixed(2).padStart(7)}  ${t.key}`)
}

const program = Effect.gen(function* () {
  const results: Array<Result> = []
  if (SIZES.some((n) => n > 0)) {
    const server = yield* postgres
    yield* enableStatementStats(server)
    const postmaster = postmasterPid(server)
    for (const n of SIZES.filter((n) => n > 0)) {
      const database = `idle_cost_${n}`
      const url = yield* createDatabase(server.url, database)
      const stats = yield* pgAt(withDatabase(server.url, database))
      yield* Effect.orDie(stats`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
      const env = async () => ({ DATABASE_URL: url, RUNNER_HOST: "127.0.0.1", RUNNER_PORT: String(await freePort()), ...upstreamEnv("http://127.0.0.1:9") })
      const r = yield* measure("postgres cluster", n, env, { postmaster, pgStats: stats, database })
      print(r)
      results.push(r)
    }
  }
  if (SQLITE) {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "pp-idle-sqlite-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
    const r = yield* measure("sqlite", 1, async () => ({ DATA_DIR: dataDir, ...upstreamEnv("http://127.0.0.1:9") }), {})
    print(r)
    results.push(r)
  }
  const out = path.resolve(root, OUT)
  mkdirSync(path.dirname(out), { recursive: true })
  writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), loadavg: os.loadavg(), argv, dist: DIST, results }, null, 2))
  console.log(`saved ${path.relative(root, out)}`)
}).pipe(Effect.scoped)

Effect.runPromise(program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
