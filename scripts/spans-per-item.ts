/**
 * Issue 13, C1: what runs per item in PostgreSQL cluster mode that does not in SQLite mode, named by
 * the spans each mode exports. One C1-sized job (2,000 items × 20 ms at 150 concurrent against
 * `scripts/stub-upstream.ts`) through one compiled service instance on SQLite and one on PostgreSQL
 * (cluster topology), each with traces on (OTLP/HTTP JSON) pointed at a tiny receiver in this process,
 * which counts the spans exported during the timed job by scope, name and parent name. A warm-up job
 * (300 items) runs first and is not counted.
 *
 * Spans are what the tracer sees: Effect spans (`Effect.withSpan`, `Effect.fn`) made by the service,
 * @effect/sql, @effect/cluster and @effect/workflow. Not seen: a database statement with no parent
 * (dropped by the service's sampler, README "Traces"; `bench:cluster --pg-stats` counts those), and
 * fibers or effects that make no span.
 *
 * `--cpu` instead: no tracing, each instance's CPU µs per item over `--runs` timed jobs (median), for
 * the PostgreSQL setup as it is and for `--variants "name:K=V,K=V;…"` (the same with these variables
 * added, e.g. `parts1:JOB_PARTITIONS=1`); `--cpu-prof <dir>` profiles every instance.
 *
 * Usage: `npx tsx scripts/spans-per-item.ts [--dist <dir>] [--out <file>] [--items 2000] [--cpu [--runs 3]
 * [--variants …]] [--cpu-prof <dir>]`
 */
import { createServer, type IncomingMessage } from "node:http"
import os from "node:os"
import path from "node:path"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { Effect, Schema } from "effect"
import { createDatabase, postgres, withDatabase } from "../test/support/postgres.js"
import { interactionsJob } from "./support/interactionsJob.js"
import { enableStatementStats, pgAt } from "./support/pgServer.js"
import { procCpuUs } from "./support/procCpu.js"
import { freePort, root, startProcess, stop, upstreamEnv } from "./support/processes.js"

const argv = process.argv.slice(2)
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const DIST = arg("dist") ?? "dist"
const OUT = arg("out")
const ITEMS = Number(arg("items") ?? 2000)
const MAX_CONCURRENT = 150
const EXPORT_MS = 500
/** `--cpu`: no tracing; CPU µs per item of each instance over `--runs` timed jobs, median. */
const CPU = argv.includes("--cpu")
/** `--cpu-prof <dir>`: each instance runs with `--cpu-prof`, its profile in `<dir>/<setup>/`. */
const CPU_PROF = arg("cpu-prof")
/** `--pg-stats`: each PostgreSQL setup's statements (pg_stat_statements, over the instance's whole life) per item run. */
const PG_STATS = argv.includes("--pg-stats")
const RUNS = Number(arg("runs") ?? 3)
/** `--variants "name:K=V,K=V;name2:K=V"`: more PostgreSQL setups, each with these variables added. */
const VARIANTS = (arg("variants") ?? "")
  .split(";")
  .filter((v) => v.includes(":"))
  .map((v) => {
    const at = v.indexOf(":")
    const env = Object.fromEntries(
      v
        .slice(at + 1)
        .split(",")
        .filter((kv) => kv.includes("="))
        .map((kv) => [kv.slice(0, kv.indexOf("=")).trim(), kv.slice(kv.indexOf("=") + 1).trim()])
    )
    return { name: v.slice(0, at).trim(), env }
  })

// ---- the receiver ----------------------------------------------------------------------------------

const OtlpSpan = Schema.Struct({
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String
})
const OtlpBody = Schema.Struct({
  resourceSpans: Schema.Array(
    Schema.Struct({
      scopeSpans: Schema.Array(
        Schema.Struct({
          scope: Schema.optional(Schema.Struct({ name: Schema.optional(Schema.String) })),
          spans: Schema.Array(OtlpSpan)
        })
      )
    })
  )
})
const decodeBody = Schema.decodeUnknownEither(Schema.parseJson(OtlpBody))

interface Seen {
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly scope: string
}

const names = new Map<string, string>()
let counted: Array<Seen> = []
let received = 0

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let s = ""
    req.setEncoding("utf8")
    req.on("data", (c: string) => (s += c))
    req.on("end", () => resolve(s))
  })

const receiver = createServer((req, res) => {
  void readBody(req).then((text) => {
    const body = decodeBody(text)
    if (body._tag === "Left") {
      console.error(`receiver: undecodable export (${req.headers["content-type"]}): ${text.slice(0, 200)}`)
      res.writeHead(400).end()
      return
    }
    for (const rs of body.right.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          names.set(s.spanId, s.name)
          received++
          counted.push({ spanId: s.spanId, parentSpanId: s.parentSpanId === "" ? undefined : s.parentSpanId, name: s.name, scope: ss.scope?.name ?? "" })
        }
      }
    }
    res.writeHead(200, { "content-type": "application/json" }).end("{}")
  })
})

// ---- a job -----------------------------------------------------------------------------------------

const job = (url: string, run: string, items: number) => interactionsJob(url, run, items, MAX_CONCURRENT)

/** Names without their ids (workflow execution hashes, part numbers), so that the same span adds up. */
const shape = (name: string) => name.replace(/\([0-9a-f]{16,}\)/g, "(…)").replace(/^run-items-\d+$/, "run-items-<part>")

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Spans per item of the timed job, by `scope | name ← parent`. */
const measure = async (label: string, env: Record<string, string>, settleMs: number) => {
  const main = path.join(root, DIST, "src/main.js")
  const prof = CPU_PROF === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${path.resolve(CPU_PROF, label)}`]
  const instance = await startProcess([...prof, main], { HOST: "127.0.0.1", PORT: "0", ...env }, /listening on (http:\/\/\S+)/)
  try {
    await sleep(settleMs)
    await job(instance.match, `${label}-warm`, 300)
    await sleep(EXPORT_MS * 4)
    counted = []
    const from = received
    const cpu: Array<number> = []
    for (let r = 0; r < (CPU ? RUNS : 1); r++) {
      const before = procCpuUs(instance.child.pid) ?? NaN
      await job(instance.match, `${label}-timed-${r}`, ITEMS)
      cpu.push(Math.round(((procCpuUs(instance.child.pid) ?? NaN) - before) / ITEMS))
    }
    if (CPU) {
      console.log(`  ${label}: CPU µs/item per run ${cpu.join(" / ")}`)
      return { total: 0, tally: new Map<string, number>(), cpu }
    }
    await sleep(EXPORT_MS * 6)
    const window = counted
    console.log(`  ${label}: ${received - from} spans exported in the window`)
    const tally = new Map<string, number>()
    for (const s of window) {
      const parent = s.parentSpanId === undefined ? "(root)" : (names.get(s.parentSpanId) ?? "(parent not exported)")
      const key = `${shape(s.name)} ← ${shape(parent)}`
      tally.set(key, (tally.get(key) ?? 0) + 1)
    }
    return { total: window.length, tally, cpu }
  } finally {
    await stop(instance.child)
  }
}

const Statement = Schema.Struct({ calls: Schema.Number, rows: Schema.Number, query: Schema.String })
const decodeStatements = Schema.decodeUnknown(Schema.Array(Statement))
const statLines: Array<string> = []

const program = Effect.gen(function* () {
  yield* Effect.promise(() => new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r())))
  yield* Effect.addFinalizer(() => Effect.sync(() => receiver.close()))
  const address = receiver.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  const otel: Record<string, string> = CPU ? {} : {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_BSP_SCHEDULE_DELAY: String(EXPORT_MS),
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "2048"
  }
  const server = yield* postgres
  console.log(`PostgreSQL ${server.version} on port ${server.port}`)
  if (PG_STATS) yield* enableStatementStats(server)
  const stub = yield* Effect.promise(() => startProcess([path.join(root, DIST, "scripts/stub-upstream.js")], { LATENCY_MS: "20" }, /listening (\d+)/))
  yield* Effect.addFinalizer(() => Effect.promise(() => stop(stub.child)))
  const upstream = upstreamEnv(`http://127.0.0.1:${stub.match}`)

  const dataDir = mkdtempSync(path.join(os.tmpdir(), "pp-spans-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dataDir, { recursive: true, force: true })))
  console.log("SQLite, one instance…")
  const sqlite = yield* Effect.promise(() => measure("sqlite", { DATA_DIR: dataDir, ...upstream, ...otel, OTEL_SERVICE_NAME: "sqlite" }, 500))

  const pgRun = (name: string, extra: Record<string, string>, i: number) =>
    Effect.gen(function* () {
      const url = yield* createDatabase(server.url, `spans_per_item_${i}`)
      console.log(`PostgreSQL cluster, one instance, ${name} ${JSON.stringify(extra)}…`)
      const env = {
        DATABASE_URL: url,
        RUNNER_HOST: "127.0.0.1",
        RUNNER_PORT: String(yield* Effect.promise(freePort)),
        ...upstream,
        ...otel,
        OTEL_SERVICE_NAME: "pg",
        ...extra
      }
      const stats = PG_STATS ? yield* pgAt(withDatabase(server.url, `spans_per_item_${i}`)) : undefined
      if (stats !== undefined) {
        yield* Effect.orDie(stats`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
        yield* Effect.orDie(stats`SELECT pg_stat_statements_reset()`)
      }
      const result = yield* Effect.promise(() => measure(name, env, 6000))
      if (stats !== undefined) {
        const items = 300 + (CPU ? RUNS : 1) * ITEMS
        const rows = yield* stats`SELECT calls::float8 AS calls, rows::float8 AS rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${`spans_per_item_${i}`})
          ORDER BY calls DESC LIMIT 14`.pipe(Effect.flatMap(decodeStatements), Effect.orDie)
        const total = yield* stats`SELECT sum(calls)::float8 AS calls, sum(rows)::float8 AS rows, '' AS query FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${`spans_per_item_${i}`})`.pipe(Effect.flatMap(decodeStatements), Effect.orDie)
        const per = (x: number) => (x / items).toFixed(3).padStart(8)
        const lines = [
          `statements of ${name} over the instance's life, per item run (${items}): calls, rows`,
          ...total.map((t) => `${per(t.calls)} ${per(t.rows)}  (all)`),
          ...rows.map((r) => `${per(r.calls)} ${per(r.rows)}  ${r.query}`)
        ]
        console.log(lines.join("\n"))
        statLines.push(...lines, "")
      }
      return result
    })
  const pg = yield* pgRun("pg", {}, 0)
  if (CPU) {
    const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
    const rows = [`sqlite: ${median(sqlite.cpu)} (${sqlite.cpu.join(" / ")})`, `pg: ${median(pg.cpu)} (${pg.cpu.join(" / ")})`]
    for (const [i, v] of VARIANTS.entries()) {
      const r = yield* pgRun(v.name, v.env, i + 1)
      rows.push(`pg ${v.name} ${JSON.stringify(v.env)}: ${median(r.cpu)} (${r.cpu.join(" / ")})`)
    }
    const lines = [...statLines, `service CPU µs per item, ${ITEMS}-item jobs × 20 ms @ ${MAX_CONCURRENT}, median of ${RUNS} after a warm-up, no tracing`, `command: npx tsx scripts/spans-per-item.ts ${argv.join(" ")}`, ...rows]
    console.log(lines.join("\n"))
    if (OUT !== undefined) writeFileSync(OUT, `${lines.join("\n")}\n`)
    return
  }

  const keys = [...new Set([...sqlite.tally.keys(), ...pg.tally.keys()])]
  const per = (t: Map<string, number>, k: string) => (t.get(k) ?? 0) / ITEMS
  keys.sort((a, b) => per(pg.tally, b) - per(sqlite.tally, b) - (per(pg.tally, a) - per(sqlite.tally, a)) || a.localeCompare(b))
  const f = (x: number) => x.toFixed(3).padStart(8)
  const lines = [
    `spans per item exported during one ${ITEMS}-item job (20 ms per call, maxConcurrent ${MAX_CONCURRENT}), after a 300-item warm-up`,
    `command: npx tsx scripts/spans-per-item.ts${argv.length > 0 ? ` ${argv.join(" ")}` : ""}`,
    `totals: SQLite ${(sqlite.total / ITEMS).toFixed(2)} spans/item (${sqlite.total}), PostgreSQL 1 instance ${(pg.total / ITEMS).toFixed(2)} spans/item (${pg.total})`,
    "(root sql.* spans are dropped by the service's sampler and not seen here)",
    "",
    `${"  SQLite".padStart(8)} ${"      PG".padStart(8)} ${"  PG−SQL".padStart(8)}  span ← parent`,
    ...keys.map((k) => `${f(per(sqlite.tally, k))} ${f(per(pg.tally, k))} ${f(per(pg.tally, k) - per(sqlite.tally, k))}  ${k}`)
  ]
  console.log(lines.join("\n"))
  if (OUT !== undefined) writeFileSync(OUT, `${lines.join("\n")}\n`)
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e)
    process.exit(1)
  }
)
