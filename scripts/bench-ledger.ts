/**
 * `npm run bench:ledger` — where the CPU per item goes (issue 13's cost ledger). One process, one
 * workload (`--items` interaction fetches × `--latency` ms at `--concurrency`, default 5,000 × 10 ms @
 * 50) against the stub upstream in a child process; the layers of the service are switched on one at
 * a time, each step adding one layer to the one before:
 *
 *   a   p-limit + undici (the floor: no engine, no policy, no storage)
 *   a1  a + a timeout per call that really stops it (`AbortSignal.timeout`, passed to undici): what
 *       every call of this project must have and p-limit alone does not give
 *   a2  Effect.forEach at the same concurrency + the floor's undici call (Effect's own floor: a fiber per
 *       call, Effect.tryPromise with the fiber's AbortSignal; no engine)
 *   a3  a2 with the upstreams' HttpClient (src/upstream/UndiciHttpClient.ts) + .json instead of the bare call
 *   b   the engine with a no-op task (no call: the engine's bookkeeping alone)
 *   b2  the engine + the floor's undici call (engine bookkeeping on top of the floor)
 *   c1s the engine + Effect's HttpClient (undici) as the library sets it up (a span per request) + response.json
 *   c1  the same client as the upstreams use it (src/upstream/tracing.ts: no span while nothing records them)
 *   c1p c1 with `@effect/platform-node`'s undici client instead of the upstreams' (src/upstream/UndiciHttpClient.ts)
 *   c2  + jsonCall: status classification + the Interactions Schema decode (decoder compiled once, as the clients do)
 *   c3  + ForumClient: the token cache, request build, the per-call span
 *   d   + the processor's policy: budget admission + breaker per call, its retry policy (bench:http's "engine in-process")
 *   d2  + an observer of the run's events that does nothing (the engine's event path alone)
 *   d2w d2 with its measured window ending two commit intervals after the run (idle, nothing running)
 *   e1a d2, but ItemFinished's handler returns an effect that does nothing (not `Effect.void`)
 *   e1b e1a + the result pushed to an array
 *   e1c e1a + `Mailbox.offer` of the result, nobody taking (e1a–e1c split e1's cost one switch at a time)
 *   e1d e1c + a fiber that sleeps the commit interval in a loop (the writer's timer, nothing taken)
 *   e1e e1d, the fiber taking all the mailbox holds each time (and dropping it): the hand-over without the writer's code
 *   e1f e1e, the taking fiber ended by `Mailbox.end` and joined (as the writer's `end` does)
 *   e1g e1e, waiting two commit intervals after the run before the scope interrupts the fiber
 *   e1  + the result writer (group commit every 5 ms) storing nothing (its hand-over and batching alone)
 *   e   + the result writer storing JSON-serialised results, no database
 *   f   + the real store: group commit to SQLite (JobStore.saveItems, a fresh file)
 *   g   the same on PostgreSQL (a throw-away server, test/support/postgres.ts), next to f
 *   h   f + event fan-out: the job's item/progress events published to one stream subscriber (JobEvents)
 *   i   the service (compiled, own process, SQLite): a batch posted `Prefer: respond-async`, its NDJSON event stream read to the end
 *
 * Per step: a warm-up, then `--reps` (default 3) measured runs; CPU µs per item is this process's
 * `process.cpuUsage` (for i, the service child's, from /proc), the stub's is reported apart; median and
 * spread. After the measured runs, one more run under the inspector's sampling profiler (i: a second
 * service started with --cpu-prof), summarised to `bench-results/ledger-profiles/<step>.txt`; raw
 * profiles stay under `.scratch/`. Saves `bench-results/ledger-latest.json` (a partial run, `--only a,d,f`,
 * saves `.scratch/ledger-partial.json` instead); `--no-prof` skips the profiles.
 *
 * Each step also reports its process's CPU by thread (main, helpers: GC and compiler threads, which a
 * profile does not sample) and, in-process, the bytes it allocated and its GC pauses per item.
 * `--isolate` runs each step in a fresh process of its own (steps run one after another in one
 * process inherit each other's heap, JIT and GC state); `--commit-interval <ms>` sets the writer's
 * group-commit interval for e1–h and the service of i (default 5, the service's). `--store-floor`
 * instead measures one SQLite group commit apart: the library's statement and transaction path
 * against SQLite's own work (saved to `.scratch/ledger-store-floor.json`).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { NodeHttpClient } from "@effect/platform-node"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { GCProfiler, getHeapStatistics, setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { spawn } from "node:child_process"
import { ConfigProvider, Context, Effect, Either, Exit, Fiber, Layer, Mailbox, Queue, Redacted, Schema, Scope } from "effect"
import { request } from "undici"
import { Interactions, type TrackedPost } from "../src/domain/Kinds.js"
import * as CircuitBreakerRegistry from "../src/engine/CircuitBreakerRegistry.js"
import * as Engine from "../src/engine/Engine.js"
import { Transient } from "../src/engine/Errors.js"
import type { ItemResult } from "../src/engine/ItemResult.js"
import * as Database from "../src/jobs/Database.js"
import * as JobEvents from "../src/jobs/JobEvents.js"
import { JobStore, type ItemEffect, type StoredItem } from "../src/jobs/JobStore.js"
import { emptyTally, itemEvents, tally } from "../src/jobs/Model.js"
import * as ResultWriter from "../src/jobs/runner/ResultWriter.js"
import { InteractionsProcessor } from "../src/processors/Interactions.js"
import { UpstreamBudgets } from "../src/upstream/Budgets.js"
import { ForumClient } from "../src/upstream/Forum.js"
import { jsonCall } from "../src/upstream/http.js"
import { KolCredentials } from "../src/upstream/KolCredentials.js"
import { clientForCalls } from "../src/upstream/tracing.js"
import * as UndiciHttpClient from "../src/upstream/UndiciHttpClient.js"
import { UpstreamConfig } from "../src/upstream/UpstreamConfig.js"
import { createDatabase, postgres } from "../test/support/postgres.js"
import { login, pLimitUndici, pLimitUndiciTimeout } from "./support/peers.js"
import { procCpuUs, threadCpuUs } from "./support/procCpu.js"
import { root, startProcess, stop, unboundedBudgets, upstreamEnv } from "./support/processes.js"
import { decodeProfile, render, summarise, type Summary } from "./support/profileSummary.js"

// ---- arguments -------------------------------------------------------------------------------------

const argv = process.argv.slice(2)
const arg = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`)
  const raw = i >= 0 ? argv[i + 1] : undefined
  return raw === undefined ? fallback : Number(raw)
}
const ITEMS = arg("items", 5000)
/** The interactions call as ForumClient makes it: decoder compiled once (`jsonCall`). */
const interactionsCall = jsonCall(Interactions)
const CONCURRENCY = arg("concurrency", 50)
const LATENCY_MS = arg("latency", 10)
const REPS = arg("reps", 3)
const onlyIndex = argv.indexOf("--only")
const ONLY = onlyIndex >= 0 ? new Set((argv[onlyIndex + 1] ?? "").split(",")) : undefined
const PROFILE = !argv.includes("--no-prof")
/** Each step in a fresh process of its own (this script again with `--only <step>`): no heap, JIT or GC state carried from one step to the next. */
const ISOLATE = argv.includes("--isolate")
const rowsToIndex = argv.indexOf("--rows-to")
/** Where a child run (`--isolate`) leaves its rows for the parent. */
const ROWS_TO = rowsToIndex >= 0 ? argv[rowsToIndex + 1] : undefined
const IDEAL_MS = Math.ceil(ITEMS / CONCURRENCY) * LATENCY_MS
/** The writer's group-commit interval, ms (`--commit-interval`; default the service's JOB_COMMIT_INTERVAL default, 5). */
const COMMIT_INTERVAL = `${arg("commit-interval", 5)} millis` as const
const KOL = "101"

// A collection between runs, so one step's garbage is not collected on the next step's time.
setFlagsFromString("--expose-gc")
const gcFn: unknown = runInNewContext("gc")
const collectGarbage = () => {
  if (typeof gcFn === "function") gcFn()
}

const postsFor = (run: string): ReadonlyArray<TrackedPost> =>
  Array.from({ length: ITEMS }, (_, i) => ({ postId: `${run}-p${i}`, articleId: `${run}-a${i}`, kolSerial: KOL }))

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

class LedgerError extends Error {}
const fail = (message: string) => Effect.die(new LedgerError(message))

// ---- steps -----------------------------------------------------------------------------------------

interface Measured {
  /** CPU of the process doing the work (this one; the service's for step i), µs. */
  readonly cpuUs: number
  /** CPU of this process when it is only the client (step i), µs. */
  readonly clientCpuUs?: number
  readonly stubCpuUs: number | undefined
  readonly wallMs: number
  /** The working process's CPU by thread group (main thread, helper threads), µs. */
  readonly threads: Record<string, number> | undefined
  /** In-process steps: bytes allocated on the JS heap and the GC pauses' time (main thread), µs. */
  readonly gc: { readonly allocatedBytes: number; readonly pauseUs: number; readonly count: number } | undefined
}

interface Step {
  readonly id: string
  readonly name: string
  /** One run of the workload; `tag` makes the run's ids unique. */
  readonly run: (tag: string) => Effect.Effect<void>
  /** Profiles one run and returns its summary (default: the in-process inspector around `run`). */
  readonly profile?: (tag: string) => Effect.Effect<Summary | undefined>
  /** Where the work's CPU is measured (default this process). */
  readonly workerPid?: () => number | undefined
}

const checkSucceeded = (what: string, succeeded: number) =>
  succeeded === ITEMS ? Effect.void : fail(`${what}: ${succeeded} of ${ITEMS} succeeded`)

const policy = { maxConcurrent: CONCURRENCY, attemptTimeout: "30 seconds" } as const

const engineStep = <A>(id: string, name: string, task: (token: string) => Engine.Task<TrackedPost, A, never>): Step => ({
  id,
  name,
  run: (tag) =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => login(upstream().url))
      const { summary } = yield* Engine.runWithSummary(postsFor(tag), task(token), policy, { idOf: (p) => p.postId })
      yield* checkSucceeded(id, summary.succeeded)
    })
})

// The stub, set once it runs (every step runs after that).
let upstreamRef: { readonly url: string; readonly pid: number | undefined } = { url: "", pid: undefined }
const upstream = () => upstreamRef

const interactionsUrl = (articleId: string) => `${upstream().url}/articles/${encodeURIComponent(articleId)}/interactions`

/** What a stored result costs to write besides its row: the interactions snapshot (kindRunner's effectOf). */
const effectOf = (post: TrackedPost, result: ItemResult<Interactions>): ItemEffect | undefined =>
  result.status === "succeeded"
    ? { _tag: "Interactions", postId: post.postId, articleId: post.articleId, kolSerial: post.kolSerial, data: result.value }
    : undefined

interface Write {
  readonly result: ItemResult<unknown>
  readonly effect: ItemEffect | undefined
}

type Save = (jobId: string, batch: ReadonlyArray<Write>) => Effect.Effect<ReadonlyArray<StoredItem>, never>

/**
 * The processor run (step d) with its finished results handed to a result writer as a job run does
 * (`kindRunner` → `PartRun`): `save` stores a batch, `published` (step h) gets each stored item.
 */
const writerRun = (
  processor: InteractionsProcessor["Type"],
  tag: string,
  prepare: (jobId: string, posts: ReadonlyArray<TrackedPost>) => Effect.Effect<void>,
  save: Save,
  publish?: (jobId: string, stored: StoredItem, counts: ReturnType<typeof emptyTally>) => Effect.Effect<void>
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const posts = postsFor(tag)
      const jobId = `ledger-${tag}`
      yield* prepare(jobId, posts)
      const counts = emptyTally(posts.length)
      const writer = yield* ResultWriter.make<Write, StoredItem>({
        save: (batch) => save(jobId, batch),
        onStored: (stored) =>
          publish === undefined
            ? Effect.void
            : Effect.forEach(stored, (item) => {
                tally(counts, item.result.status)
                return publish(jobId, item, counts)
              }, { discard: true }),
        commitInterval: COMMIT_INTERVAL,
        retry: ResultWriter.retryWithin("1 second"),
        reports: { failed: () => Effect.void, succeeded: Effect.void, release: Effect.void },
        annotations: { job: jobId }
      })
      yield* observedRun(processor, jobId, posts, writer.offer, "writer run")
      yield* Effect.orDie(writer.end)
    })
  )

/**
 * The processor run with each finished result handed to `handle` as a job run hands it to its
 * writer (`kindRunner` → `PartRun`): the writer runs (e1–h) and e1's split (e1a–e1g), which hand it
 * to less than a writer.
 */
const observedRun = (
  processor: InteractionsProcessor["Type"],
  runId: string,
  posts: ReadonlyArray<TrackedPost>,
  handle: (write: Write) => Effect.Effect<void>,
  step: string
) =>
  Effect.gen(function* () {
    const { summary } = yield* processor.run(posts, { maxConcurrent: CONCURRENCY }, {
      runId,
      onEvent: (event) => {
        if (event._tag !== "ItemFinished") return Effect.void
        const post = posts[event.result.index]
        return handle({ result: event.result, effect: post === undefined ? undefined : effectOf(post, event.result) })
      }
    })
    yield* checkSucceeded(step, summary.succeeded)
  })

/** An e1 split step: `observedRun` of the step's posts. */
const splitRun = (processor: InteractionsProcessor["Type"], tag: string, handle: (write: Write) => Effect.Effect<void>) =>
  observedRun(processor, `ledger-${tag}`, postsFor(tag), handle, "observed run")

/** e1e, e1g: a fiber taking everything from the mailbox every commit interval, and dropping it. */
const takeAllEvery = (mailbox: Mailbox.Mailbox<Write>) => Effect.forever(Effect.zipRight(Effect.sleep(COMMIT_INTERVAL), mailbox.takeAll))

/** d2w, e1g: what ends a run two commit intervals after its last result, as a writer's last commit may. */
const twoCommitIntervals = Effect.zipRight(Effect.sleep(COMMIT_INTERVAL), Effect.sleep(COMMIT_INTERVAL))

/**
 * e1c–e1g: each result offered to a mailbox, as the writer's hand-over; `around` runs the run (with
 * whatever takes from the mailbox beside it, or waits after it) in a scope the step ends.
 */
const mailboxRun = (
  processor: InteractionsProcessor["Type"],
  tag: string,
  around: (mailbox: Mailbox.Mailbox<Write>, run: Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
) =>
  Effect.scoped(
    Effect.flatMap(Mailbox.make<Write>(), (mailbox) => around(mailbox, splitRun(processor, tag, (write) => Effect.asVoid(mailbox.offer(write)))))
  )

/** Kept so the serialisation cannot be optimised away. */
let serialisedBytes = 0

/** Step e's "store": what saveItems writes per row and per snapshot, serialised, no database. */
const serialiseOnly: Save = (_jobId, batch) =>
  Effect.sync(() =>
    batch.map((w, i) => {
      serialisedBytes += JSON.stringify(w.result).length
      if (w.effect?._tag === "Interactions") serialisedBytes += JSON.stringify(w.effect.data).length
      return { index: w.result.index, seq: i, result: w.result }
    })
  )

/** Step e1's "store": the writer's hand-over and group commit alone, nothing serialised. */
const storeNothing: Save = (_jobId, batch) => Effect.succeed(batch.map((w, i) => ({ index: w.result.index, seq: i, result: w.result })))

const storeSave =
  (store: JobStore): Save =>
  (jobId, batch) =>
    Effect.orDie(store.saveItems(jobId, batch, Date.now()))

const createJob = (store: JobStore) => (jobId: string, posts: ReadonlyArray<TrackedPost>) =>
  Effect.orDie(
    store.createJob({
      id: jobId,
      kind: "interactions",
      inputs: posts,
      options: { maxConcurrent: CONCURRENCY },
      idempotencyKey: undefined,
      requestHash: undefined,
      createdAt: Date.now()
    })
  )

// ---- measuring -------------------------------------------------------------------------------------

const measureOnce = (step: Step, tag: string): Effect.Effect<Measured> =>
  Effect.gen(function* () {
    collectGarbage()
    const worker = step.workerPid?.()
    const stub0 = procCpuUs(upstream().pid)
    const worker0 = procCpuUs(worker)
    const threads0 = threadCpuUs(worker ?? process.pid)
    const gcProfiler = worker === undefined ? new GCProfiler() : undefined
    const heap0 = getHeapStatistics().used_heap_size
    gcProfiler?.start()
    const self0 = process.cpuUsage()
    const t0 = performance.now()
    yield* step.run(tag)
    const wallMs = performance.now() - t0
    const self = process.cpuUsage(self0)
    const gcStats = gcProfiler?.stop()
    const heap1 = getHeapStatistics().used_heap_size
    const stub1 = procCpuUs(upstream().pid)
    const worker1 = procCpuUs(worker)
    const threads1 = threadCpuUs(worker ?? process.pid)
    const selfUs = self.user + self.system
    const stubCpuUs = stub0 === undefined || stub1 === undefined ? undefined : stub1 - stub0
    const threads =
      threads0 === undefined || threads1 === undefined
        ? undefined
        : Object.fromEntries(Object.entries(threads1).map(([k, v]) => [k, v - (threads0[k] ?? 0)]))
    // What the run allocated: what each collection freed, plus what is still live at the end.
    const gc =
      gcStats === undefined
        ? undefined
        : {
            allocatedBytes:
              heap1 -
              heap0 +
              gcStats.statistics.reduce((sum, s) => sum + s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize, 0),
            pauseUs: gcStats.statistics.reduce((sum, s) => sum + s.cost, 0),
            count: gcStats.statistics.length
          }
    if (worker === undefined) return { cpuUs: selfUs, stubCpuUs, wallMs, threads, gc }
    return { cpuUs: (worker1 ?? 0) - (worker0 ?? 0), clientCpuUs: selfUs, stubCpuUs, wallMs, threads, gc }
  })

const inspectorProfile = (step: Step, tag: string): Effect.Effect<Summary | undefined> =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const session = new Session()
      session.connect()
      await session.post("Profiler.enable")
      await session.post("Profiler.setSamplingInterval", { interval: 250 })
      await session.post("Profiler.start")
      return session
    }),
    (session) =>
      Effect.gen(function* () {
        yield* step.run(tag)
        const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
        const decoded = decodeProfile(profile)
        return Either.isRight(decoded) ? summarise(decoded.right) : undefined
      }),
    (session) => Effect.promise(async () => session.disconnect())
  )

/** A number that may be NaN (a skipped step), which JSON writes as null. */
const NumberOrNaN = Schema.transform(Schema.NullOr(Schema.Number), Schema.Number, {
  strict: true,
  decode: (n) => n ?? NaN,
  encode: (n) => n
})

const Row = Schema.Struct({
  step: Schema.String,
  name: Schema.String,
  cpuUsPerItem: NumberOrNaN,
  cpuUsPerItemRuns: Schema.Array(Schema.Number),
  clientCpuUsPerItem: Schema.optional(Schema.Number),
  stubCpuUsPerItem: Schema.UndefinedOr(Schema.Number),
  wallMs: NumberOrNaN,
  wallMsRuns: Schema.Array(Schema.Number),
  /** Median CPU µs per item of the working process's thread groups (main thread, helper threads). */
  threadsUsPerItem: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Number })),
  /** Median bytes allocated per item on the JS heap, GC pause µs per item and collections per run (in-process steps). */
  allocBytesPerItem: Schema.optional(Schema.Number),
  gcPauseUsPerItem: Schema.optional(Schema.Number),
  gcCount: Schema.optional(Schema.Number),
  skipped: Schema.optional(Schema.String)
})
type Row = typeof Row.Type
const Rows = Schema.Array(Row)

const perItem = (us: number) => Math.round((10 * us) / ITEMS) / 10

/** "threads main 600 / v8 150 / …; heap 9.1 KB/item, GC pauses 40 µs/item (12)". */
const breakdown = (row: Row) =>
  (row.threadsUsPerItem === undefined
    ? ""
    : `; threads ${Object.entries(row.threadsUsPerItem)
        .filter(([, us]) => us > 0)
        .map(([k, us]) => `${k} ${us}`)
        .join(" / ")}`) +
  (row.allocBytesPerItem === undefined
    ? ""
    : `; heap ${(row.allocBytesPerItem / 1024).toFixed(1)} KB/item allocated, GC pauses ${row.gcPauseUsPerItem} µs/item (${row.gcCount} collections)`)

const runStep = (step: Step) =>
  Effect.gen(function* () {
    process.stdout.write(`${step.id.padEnd(3)} ${step.name} … `)
    yield* step.run(`${step.id}-warm`)
    const runs: Array<Measured> = []
    for (let r = 0; r < REPS; r++) runs.push(yield* measureOnce(step, `${step.id}-r${r}`))
    const cpu = runs.map((m) => perItem(m.cpuUs))
    const walls = runs.map((m) => Math.round(m.wallMs))
    const stub = runs.flatMap((m) => (m.stubCpuUs === undefined ? [] : [perItem(m.stubCpuUs)]))
    const client = runs.flatMap((m) => (m.clientCpuUs === undefined ? [] : [perItem(m.clientCpuUs)]))
    const threadRuns = runs.flatMap((m) => (m.threads === undefined ? [] : [m.threads]))
    const threadsUsPerItem =
      threadRuns.length === 0
        ? undefined
        : Object.fromEntries(Object.keys(threadRuns[0] ?? {}).map((k) => [k, median(threadRuns.map((t) => perItem(t[k] ?? 0)))]))
    const gcRuns = runs.flatMap((m) => (m.gc === undefined ? [] : [m.gc]))
    const row: Row = {
      step: step.id,
      name: step.name,
      cpuUsPerItem: median(cpu),
      cpuUsPerItemRuns: cpu,
      ...(client.length === 0 ? {} : { clientCpuUsPerItem: median(client) }),
      stubCpuUsPerItem: stub.length === 0 ? undefined : median(stub),
      wallMs: median(walls),
      wallMsRuns: walls,
      ...(threadsUsPerItem === undefined ? {} : { threadsUsPerItem }),
      ...(gcRuns.length === 0
        ? {}
        : {
            allocBytesPerItem: Math.round(median(gcRuns.map((g) => g.allocatedBytes)) / ITEMS),
            gcPauseUsPerItem: perItem(median(gcRuns.map((g) => g.pauseUs))),
            gcCount: median(gcRuns.map((g) => g.count))
          })
    }
    console.log(`${row.cpuUsPerItem} µs/item (${cpu.join(" / ")}), ${row.wallMs} ms (${walls.join(" / ")})${breakdown(row)}`)
    if (PROFILE) {
      const summary = yield* (step.profile ?? ((tag: string) => inspectorProfile(step, tag)))(`${step.id}-prof`)
      if (summary !== undefined) {
        const dir = path.join(root, "bench-results/ledger-profiles")
        mkdirSync(dir, { recursive: true })
        writeFileSync(
          path.join(dir, `${step.id}.txt`),
          render(
            `bench:ledger step ${step.id}: ${step.name}`,
            summary,
            `${ITEMS} items × ${LATENCY_MS} ms @ ${CONCURRENCY}; one run under the sampling profiler (250 µs), node ${process.version}`
          )
        )
      }
    }
    return row
  })

// ---- the service (step i) --------------------------------------------------------------------------

const startService = (dataDir: string, execArgv: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      startProcess(
        [...execArgv, path.join(root, "dist/src/main.js")],
        { HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, JOB_COMMIT_INTERVAL: COMMIT_INTERVAL, ...upstreamEnv(upstream().url) },
        /listening on (http:\/\/\S+)/
      )
    ),
    ({ child }) => Effect.promise(() => stop(child))
  )

/** Posts the batch as an async job and reads its NDJSON event stream to the end. */
const viaService = (baseUrl: string, tag: string) =>
  Effect.gen(function* () {
    const posted = yield* Effect.promise(() =>
      fetch(`${baseUrl}/api/interactions/fetch-all-interactions`, {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "respond-async" },
        body: JSON.stringify({ posts: postsFor(tag), maxConcurrent: CONCURRENCY })
      })
    )
    const location = posted.headers.get("location")
    yield* Effect.promise(() => posted.arrayBuffer())
    if (posted.status !== 202 || location === null) return yield* fail(`service answered ${posted.status} without a Location`)
    const events = yield* Effect.promise(() =>
      fetch(new URL(`${location.replace(/\/$/, "")}/events`, baseUrl), { headers: { accept: "application/x-ndjson" } })
    )
    const text = yield* Effect.promise(() => events.text())
    const lines = text.split("\n").filter((l) => l !== "")
    const last = lines[lines.length - 1] ?? ""
    const succeeded = /"succeeded":(\d+)/.exec(last)?.[1]
    yield* checkSucceeded(`service (last event ${last.slice(0, 120)})`, Number(succeeded))
  })

const serviceProfile = (tag: string): Effect.Effect<Summary | undefined> =>
  Effect.scoped(
    Effect.gen(function* () {
      const profDir = path.join(root, ".scratch/ledger-prof")
      rmSync(profDir, { recursive: true, force: true })
      mkdirSync(profDir, { recursive: true })
      const dataDir = mkdtempSync(path.join(os.tmpdir(), "pp-ledger-prof-"))
      const window = yield* Effect.scoped(
        Effect.gen(function* () {
          const { match: url } = yield* startService(dataDir, ["--cpu-prof", `--cpu-prof-dir=${profDir}`, "--cpu-prof-interval=250"])
          yield* viaService(url, `${tag}-warm`)
          const fromUs = Number(process.hrtime.bigint() / 1000n)
          yield* viaService(url, tag)
          return { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) }
        })
      )
      rmSync(dataDir, { recursive: true, force: true })
      const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"))
      if (file === undefined) return undefined
      const decoded = decodeProfile(JSON.parse(readFileSync(path.join(profDir, file), "utf8")))
      if (Either.isLeft(decoded)) return undefined
      // The profile's clock is the monotonic clock process.hrtime reads: keep the profiled batch only.
      const windowed = summarise(decoded.right, window)
      return windowed.samples > 0 ? windowed : summarise(decoded.right)
    })
  )

// ---- the program -----------------------------------------------------------------------------------

const upstreamLayers = (url: string) =>
  Layer.mergeAll(
    UndiciHttpClient.layer,
    UpstreamConfig.allAt(url),
    KolCredentials.fromRecord({ [KOL]: { email: "kol101@example.com", password: Redacted.make("pw-101") } })
  )

const processorLayer = (url: string) =>
  InteractionsProcessor.layer.pipe(
    Layer.provideMerge(ForumClient.layer),
    Layer.provideMerge(
      UpstreamBudgets.layer.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(unboundedBudgets))))))
    ),
    Layer.provide(CircuitBreakerRegistry.layer),
    Layer.provideMerge(upstreamLayers(url))
  )

const program = Effect.gen(function* () {
  const stub = yield* Effect.acquireRelease(
    Effect.promise(() => startProcess([path.join(root, "dist/scripts/stub-upstream.js")], { LATENCY_MS: String(LATENCY_MS) }, /listening (\d+)/)),
    ({ child }) => Effect.promise(() => stop(child))
  )
  upstreamRef = { url: `http://127.0.0.1:${stub.match}`, pid: stub.child.pid }
  const url = upstream().url
  const context = yield* Layer.build(processorLayer(url))
  const libraryClient = yield* Effect.provide(HttpClient.HttpClient, context)
  const client = yield* clientForCalls(libraryClient)
  const platformNodeClient = yield* clientForCalls(Context.get(yield* Layer.build(NodeHttpClient.layerUndici), HttpClient.HttpClient))
  const forum = yield* Effect.provide(ForumClient, context)
  const processor = yield* Effect.provide(InteractionsProcessor, context)
  const tmp = mkdtempSync(path.join(os.tmpdir(), "pp-ledger-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(tmp, { recursive: true, force: true })))

  // Built in the program's scope: the store's connection lives until the end.
  const storeAt = (where: Database.DatabaseLocation) =>
    Effect.map(Layer.build(JobStore.Default.pipe(Layer.provide(Database.layer(where)))), (built) => Context.get(built, JobStore))
  const sqliteStore = yield* Effect.orDie(storeAt({ dialect: "sqlite", filename: path.join(tmp, "ledger.db") }))

  const wanted = (id: string) => ONLY === undefined || ONLY.has(id)
  const skipped: Array<Row> = []
  const pgStore = wanted("g")
    ? yield* Effect.gen(function* () {
        const server = yield* postgres
        const dbUrl = yield* createDatabase(server.url, "ledger")
        return yield* storeAt({ dialect: "pg", url: Redacted.make(dbUrl), display: "ledger" })
      }).pipe(
        Effect.tapError((e) => Effect.sync(() => skipped.push(skippedRow("g", "+ group commit to PostgreSQL", `no PostgreSQL: ${e.message}`)))),
        Effect.option
      )
    : undefined

  const events = yield* JobEvents.make
  /** The floor's call made from Effect: undici's request API, the fiber's AbortSignal passed down. */
  const undiciCall = (token: string, post: TrackedPost) =>
    Effect.tryPromise({
      try: async (signal) => {
        const response = await request(interactionsUrl(post.articleId), { headers: { authorization: `Bearer ${token}` }, signal })
        const body: unknown = await response.body.json()
        return { status: response.statusCode, body }
      },
      catch: () => new Transient({ message: "undici call failed" })
    }).pipe(
      Effect.filterOrFail(
        (answer) => answer.status === 200,
        (answer) => new Transient({ message: `upstream answered ${answer.status}` })
      ),
      Effect.map((answer) => answer.body)
    )
  /** One call through the upstreams' HttpClient, body read as JSON. */
  const clientCall = (token: string, post: TrackedPost) =>
    client.execute(HttpClientRequest.get(interactionsUrl(post.articleId)).pipe(HttpClientRequest.bearerToken(token))).pipe(
      Effect.flatMap((response) => response.json),
      Effect.mapError(() => new Transient({ message: "HttpClient call failed" }))
    )
  /** Effect's own floor: `Effect.forEach` at the run's concurrency, a fiber per call, no engine. */
  const forEachStep = (id: string, name: string, call: (token: string, post: TrackedPost) => Effect.Effect<unknown, Transient>): Step => ({
    id,
    name,
    run: (tag) =>
      Effect.gen(function* () {
        const token = yield* Effect.promise(() => login(upstream().url))
        let succeeded = 0
        yield* Effect.forEach(
          postsFor(tag),
          (post) => call(token, post).pipe(Effect.match({ onFailure: () => undefined, onSuccess: () => void succeeded++ })),
          { concurrency: CONCURRENCY, discard: true }
        )
        yield* checkSucceeded(id, succeeded)
      })
  })
  /** d2: the run with an observer of its events that does nothing. */
  const nothingObserved = (tag: string, step: string) =>
    Effect.flatMap(
      processor.run(postsFor(tag), { maxConcurrent: CONCURRENCY }, { runId: `ledger-${tag}`, onEvent: () => Effect.void }),
      ({ summary }) => checkSucceeded(step, summary.succeeded)
    )
  const steps: ReadonlyArray<Step> = [
    {
      id: "a",
      name: "p-limit + undici (floor)",
      run: (tag) => Effect.asVoid(Effect.promise(() => pLimitUndici(url, postsFor(tag).map((p) => p.articleId), CONCURRENCY)))
    },
    {
      id: "a1",
      name: "a + a timeout per call that aborts it",
      run: (tag) => Effect.asVoid(Effect.promise(() => pLimitUndiciTimeout(url, postsFor(tag).map((p) => p.articleId), CONCURRENCY, 30_000)))
    },
    forEachStep("a2", "Effect.forEach + undici call (Effect's floor)", undiciCall),
    forEachStep("a3", "Effect.forEach + HttpClient (as upstreams) + .json", clientCall),
    engineStep("b", "engine, no-op task (no call)", () => () => Effect.succeed({ views: 0, likes: 0, comments: 0, shares: 0 })),
    engineStep("b2", "engine + undici call (the floor's call)", (token) => (post) => undiciCall(token, post)),
    engineStep("c1s", "engine + HttpClient (span per request) + .json", (token) => (post) =>
      libraryClient.execute(HttpClientRequest.get(interactionsUrl(post.articleId)).pipe(HttpClientRequest.bearerToken(token))).pipe(
        Effect.flatMap((response) => response.json),
        Effect.mapError(() => new Transient({ message: "HttpClient call failed" }))
      )
    ),
    engineStep("c1p", "engine + platform-node's undici HttpClient, no span + .json", (token) => (post) =>
      platformNodeClient.execute(HttpClientRequest.get(interactionsUrl(post.articleId)).pipe(HttpClientRequest.bearerToken(token))).pipe(
        Effect.flatMap((response) => response.json),
        Effect.mapError(() => new Transient({ message: "HttpClient call failed" }))
      )
    ),
    engineStep("c1", "engine + HttpClient, no span (as upstreams) + .json", (token) => (post) => clientCall(token, post)),
    engineStep("c2", "+ jsonCall (classification + Schema decode)", (token) => (post) =>
      interactionsCall(client, HttpClientRequest.get(interactionsUrl(post.articleId)).pipe(HttpClientRequest.bearerToken(token)), "ledger")
    ),
    engineStep("c3", "+ ForumClient (token cache, span)", () => (post) => forum.interactions(post.kolSerial, post.articleId)),
    {
      id: "d",
      name: "+ processor policy (budget, breaker, retry)",
      run: (tag) =>
        Effect.flatMap(processor.run(postsFor(tag), { maxConcurrent: CONCURRENCY }), ({ summary }) => checkSucceeded("d", summary.succeeded))
    },
    {
      id: "d2",
      name: "+ an observer of the run's events (does nothing)",
      run: (tag) => nothingObserved(tag, "d2")
    },
    // e1 split one switch at a time (the writer's hand-over alone): e1a–e1c, then e1 itself.
    {
      id: "d2w",
      name: "d2, its measured window ending two commit intervals later",
      run: (tag) => Effect.zipRight(nothingObserved(tag, "d2w"), twoCommitIntervals)
    },
    {
      id: "e1a",
      name: "d2, ItemFinished's handler an Effect.sync no-op",
      run: (tag) => splitRun(processor, tag, () => Effect.sync(() => {}))
    },
    {
      id: "e1b",
      name: "e1a + pushes the result to an array",
      run: (tag) => {
        const kept: Array<Write> = []
        return splitRun(processor, tag, (write) => Effect.sync(() => void kept.push(write)))
      }
    },
    {
      id: "e1c",
      name: "e1a + Mailbox.offer, nobody taking",
      run: (tag) => mailboxRun(processor, tag, (_, run) => run)
    },
    {
      id: "e1d",
      name: "e1c + a fiber sleeping commitInterval in a loop",
      run: (tag) => mailboxRun(processor, tag, (_, run) => Effect.zipRight(Effect.forkScoped(Effect.forever(Effect.sleep(COMMIT_INTERVAL))), run))
    },
    {
      id: "e1e",
      name: "e1d, the fiber taking all (and dropping it) each time",
      run: (tag) => mailboxRun(processor, tag, (mailbox, run) => Effect.zipRight(Effect.forkScoped(takeAllEvery(mailbox)), run))
    },
    {
      id: "e1f",
      name: "e1e, the fiber ended by Mailbox.end and joined",
      run: (tag) =>
        mailboxRun(processor, tag, (mailbox, run) =>
          Effect.gen(function* () {
            const taker = yield* Effect.forkScoped(
              Effect.iterate(false, { while: (end) => !end, body: () => Effect.zipRight(Effect.sleep(COMMIT_INTERVAL), Effect.map(mailbox.takeAll, ([, end]) => end)) })
            )
            yield* run
            yield* mailbox.end
            yield* Fiber.join(taker)
          })
        )
    },
    {
      id: "e1g",
      name: "e1e, waiting two commit intervals before the scope ends it",
      run: (tag) =>
        mailboxRun(processor, tag, (mailbox, run) =>
          Effect.zipRight(Effect.forkScoped(takeAllEvery(mailbox)), Effect.zipRight(run, twoCommitIntervals))
        )
    },
    {
      id: "e1",
      name: "+ result writer, storing nothing",
      run: (tag) => writerRun(processor, tag, () => Effect.void, storeNothing)
    },
    {
      id: "e",
      name: "+ result writer, serialised (no DB)",
      run: (tag) => writerRun(processor, tag, () => Effect.void, serialiseOnly)
    },
    {
      id: "f",
      name: "+ group commit to SQLite",
      run: (tag) => writerRun(processor, tag, createJob(sqliteStore), storeSave(sqliteStore))
    },
    ...(pgStore === undefined || pgStore._tag === "None"
      ? []
      : [
          {
            id: "g",
            name: "+ group commit to PostgreSQL (instead of f)",
            run: (tag: string) => writerRun(processor, tag, createJob(pgStore.value), storeSave(pgStore.value))
          }
        ]),
    {
      id: "h",
      name: "f + events to one stream subscriber",
      run: (tag) =>
        Effect.scoped(
          Effect.gen(function* () {
            const jobId = `ledger-${tag}`
            const queue = yield* events.subscribe(jobId)
            // The follower: takes every event as a stream reader would, until the last progress.
            const follower = yield* Effect.forkScoped(
              Effect.iterate(0, {
                while: (seen) => seen < ITEMS,
                body: (seen) =>
                  Effect.map(Queue.takeBetween(queue, 1, Number.MAX_SAFE_INTEGER), (chunk) => {
                    let n = seen
                    for (const event of chunk) if (event.type === "item") n++
                    return n
                  })
              })
            )
            yield* writerRun(processor, tag, createJob(sqliteStore), storeSave(sqliteStore), (job, item, counts) =>
              Effect.forEach(itemEvents(job, item, counts, { inFlight: 0 }), events.publish, { discard: true })
            )
            yield* Effect.asVoid(follower.await)
          })
        )
    }
  ]

  // Step i: the service, measured in its own process.
  const serviceDir = mkdtempSync(path.join(os.tmpdir(), "pp-ledger-svc-"))
  const serviceScope = yield* Scope.make()
  yield* Effect.addFinalizer(() =>
    Effect.zipRight(Scope.close(serviceScope, Exit.void), Effect.sync(() => rmSync(serviceDir, { recursive: true, force: true })))
  )
  const service = wanted("i") ? yield* Scope.extend(startService(serviceDir), serviceScope) : undefined
  const serviceStep: ReadonlyArray<Step> =
    service === undefined
      ? []
      : [
          {
            id: "i",
            name: "the service: HTTP API, durable job, SQLite, event stream",
            run: (tag) => viaService(service.match, tag),
            workerPid: () => service.child.pid,
            profile: serviceProfile
          }
        ]

  const rows: Array<Row> = []
  console.log(
    `\nbench:ledger — ${ITEMS} items × ${LATENCY_MS} ms @ ${CONCURRENCY} (ideal ${IDEAL_MS} ms), median of ${REPS} after a warm-up (node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")})\n`
  )
  for (const step of [...steps, ...serviceStep]) {
    if (!wanted(step.id)) continue
    rows.push(yield* runStep(step))
  }
  rows.push(...skipped)
  if (ROWS_TO !== undefined) writeFileSync(ROWS_TO, JSON.stringify(rows))
  else report(rows)
  if (serialisedBytes > 0) console.log(`(step e serialised ${serialisedBytes} bytes in all)`)
}).pipe(Effect.scoped)

/**
 * `--store-floor`: what one group commit costs on SQLite, and how much of it is the library's path
 * (`@effect/sql`: a transaction's span, connection scope and BEGIN/COMMIT; a statement's compile,
 * prepared-statement cache lookup and span) rather than SQLite's own work. Commits of 8 results (the
 * writer's batch at H2's rate, ~1,250 results/s every 5 ms) on a job of ITEMS inputs,
 * 1,000 commits a run, CPU µs per commit.
 */
const storeFloor = Effect.gen(function* () {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "pp-ledger-floor-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(tmp, { recursive: true, force: true })))
  const context = yield* Effect.orDie(
    Layer.build(JobStore.Default.pipe(Layer.provideMerge(Database.layer({ dialect: "sqlite", filename: path.join(tmp, "floor.db") }))))
  )
  const sql = Context.get(context, SqlClient.SqlClient)
  const store = Context.get(context, JobStore)
  const B = 8
  /** Commits per run: enough that a run's fixed costs do not count (items past the job's inputs are fine). */
  const COMMITS = 1000
  const value = { views: 1234, likes: 56, comments: 7, shares: 8 }
  const resultOf = (index: number): ItemResult<unknown> => ({ index, id: `p${index}`, status: "succeeded", value, attempts: 1, durationMs: 21 })
  const variants: ReadonlyArray<readonly [string, (job: string, i: number) => Effect.Effect<unknown, unknown>]> = [
    ["one statement (SELECT 1)", () => sql`SELECT 1`],
    ["an empty transaction (BEGIN, COMMIT)", () => sql.withTransaction(Effect.void)],
    [
      `a transaction with the ${B}-row item INSERT … RETURNING`,
      (job, i) =>
        sql.withTransaction(
          sql`INSERT INTO pp_job_items ${sql.insert(
            Array.from({ length: B }, (_, k) => ({ job_id: job, idx: i + k, seq: i + k, status: "succeeded", result: JSON.stringify(resultOf(i + k)), finished_at: 0 }))
          )} ON CONFLICT DO NOTHING RETURNING idx`
        )
    ],
    [
      "saveItems, no effects",
      (job, i) => store.saveItems(job, Array.from({ length: B }, (_, k) => ({ result: resultOf(i + k), effect: undefined })), Date.now())
    ],
    [
      "saveItems with the interactions snapshot + history (H2's)",
      (job, i) =>
        store.saveItems(
          job,
          Array.from({ length: B }, (_, k) => ({
            result: resultOf(i + k),
            effect: { _tag: "Interactions" as const, postId: `${job}-p${i + k}`, articleId: `a${i + k}`, kolSerial: KOL, data: value }
          })),
          Date.now()
        )
    ]
  ]
  let jobs = 0
  const out: Array<{ readonly what: string; readonly cpuUsPerCommit: number; readonly cpuUsPerItem: number; readonly runs: ReadonlyArray<number> }> = []
  console.log(`\nbench:ledger --store-floor: SQLite, commits of ${B} results on a job of ${ITEMS} inputs, CPU µs per commit (median of ${REPS} after a warm-up; load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")})`)
  for (const [what, commit] of variants) {
    const runs: Array<number> = []
    for (let r = 0; r <= REPS; r++) {
      const job = `floor-${jobs++}`
      yield* createJob(store)(job, postsFor(job))
      // No collection first: what it leaves to the helper threads would be charged to the commits.
      const c0 = process.cpuUsage()
      for (let n = 0; n < COMMITS; n++) yield* Effect.orDie(commit(job, n * B))
      const c = process.cpuUsage(c0)
      if (r > 0) runs.push(Math.round((c.user + c.system) / COMMITS))
    }
    const perCommit = median(runs)
    out.push({ what, cpuUsPerCommit: perCommit, cpuUsPerItem: Math.round((10 * perCommit) / B) / 10, runs })
    console.log(`  ${what.padEnd(60)} ${String(perCommit).padStart(6)} µs/commit  ${(perCommit / B).toFixed(1).padStart(6)} µs/item  (${runs.join(" / ")})`)
  }
  const saveTo = path.join(root, ".scratch/ledger-store-floor.json")
  mkdirSync(path.dirname(saveTo), { recursive: true })
  writeFileSync(saveTo, JSON.stringify({ at: new Date().toISOString(), node: process.version, loadavg: os.loadavg(), batch: B, inputs: ITEMS, rows: out }, null, 2))
}).pipe(Effect.scoped)

/** The steps in the order a full run takes them. */
const stepIds = ["a", "a1", "a2", "a3", "b", "b2", "c1s", "c1p", "c1", "c2", "c3", "d", "d2", "d2w", "e1a", "e1b", "e1c", "e1d", "e1e", "e1f", "e1g", "e1", "e", "f", "g", "h", "i"]

/** `--isolate`: each wanted step run by a child process of its own, one after another; the rows reported together. */
const isolated = Effect.gen(function* () {
  const passOn: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? ""
    if (a === "--isolate") continue
    if (a === "--only" || a === "--rows-to") {
      i++
      continue
    }
    passOn.push(a)
  }
  const rowsFile = path.join(os.tmpdir(), `pp-ledger-rows-${process.pid}.json`)
  const rows: Array<Row> = []
  console.log(`\nbench:ledger --isolate: each step in a fresh process (load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")})`)
  for (const id of stepIds) {
    if (ONLY !== undefined && !ONLY.has(id)) continue
    rmSync(rowsFile, { force: true })
    yield* Effect.async<void>((resume) => {
      const child = spawn(process.execPath, [process.argv[1] ?? "", ...passOn, "--only", id, "--rows-to", rowsFile], { stdio: "inherit" })
      child.on("exit", () => resume(Effect.void))
    })
    const decoded = yield* Effect.either(Effect.try(() => readFileSync(rowsFile, "utf8")))
    if (Either.isLeft(decoded)) {
      rows.push(skippedRow(id, id, "its process left no rows"))
      continue
    }
    rows.push(...yield* Schema.decodeUnknown(Schema.parseJson(Rows))(decoded.right).pipe(Effect.orDie))
  }
  rmSync(rowsFile, { force: true })
  report(rows, "isolated")
})

const skippedRow = (step: string, name: string, reason: string): Row => ({
  step,
  name,
  cpuUsPerItem: NaN,
  cpuUsPerItemRuns: [],
  stubCpuUsPerItem: undefined,
  wallMs: NaN,
  wallMsRuns: [],
  skipped: reason
})

/** What each step is compared with: the step it adds a layer to. */
const previousOf: Record<string, string> = { a1: "a", a2: "a1", a3: "a2", b: "a", b2: "b", c1s: "b2", c1p: "b2", c1: "b2", c2: "c1", c3: "c2", d: "c3", d2: "d", d2w: "d2", e1a: "d2", e1b: "e1a", e1c: "e1b", e1d: "e1c", e1e: "e1d", e1f: "e1e", e1g: "e1e", e1: "e1e", e: "e1", f: "e", g: "e", h: "f", i: "h" }

const report = (rows: ReadonlyArray<Row>, mode: "one process" | "isolated" = "one process") => {
  const byId = new Map(rows.map((r) => [r.step, r]))
  const floor = byId.get("a")
  const fmt = (n: number | undefined, digits = 1) => (n === undefined || Number.isNaN(n) ? "—" : n.toFixed(digits))
  console.log(
    `\n${mode === "isolated" ? "each step in its own process" : "all steps in one process (a step may inherit the heap and JIT state of those before it; --isolate runs each alone)"}\nstep  layer                                              CPU µs/item   Δ prev   spread        stub µs/item   wall ms   × ideal   × floor wall   × floor CPU`
  )
  const table = rows.map((r) => {
    const prev = byId.get(previousOf[r.step] ?? "")
    const delta = prev === undefined ? undefined : r.cpuUsPerItem - prev.cpuUsPerItem
    const spread = r.cpuUsPerItemRuns.length === 0 ? "" : `${Math.min(...r.cpuUsPerItemRuns)}–${Math.max(...r.cpuUsPerItemRuns)}`
    const line = {
      ...r,
      deltaCpuUsPerItem: delta === undefined ? undefined : Math.round(delta * 10) / 10,
      previous: prev?.step,
      xIdeal: Math.round((1000 * r.wallMs) / IDEAL_MS) / 1000,
      xFloorWall: floor === undefined ? undefined : Math.round((1000 * r.wallMs) / floor.wallMs) / 1000,
      xFloorCpu: floor === undefined ? undefined : Math.round((1000 * r.cpuUsPerItem) / floor.cpuUsPerItem) / 1000
    }
    console.log(
      `${r.step.padEnd(5)} ${r.name.slice(0, 50).padEnd(50)} ${fmt(r.cpuUsPerItem).padStart(11)} ${(delta === undefined ? "" : (delta >= 0 ? "+" : "") + fmt(delta)).padStart(8)}   ${spread.padEnd(13)} ${fmt(r.stubCpuUsPerItem).padStart(12)} ${fmt(r.wallMs, 0).padStart(9)} ${fmt(line.xIdeal, 3).padStart(9)} ${fmt(line.xFloorWall, 3).padStart(14)} ${fmt(line.xFloorCpu, 2).padStart(13)}` +
        (r.skipped === undefined ? "" : `  skipped: ${r.skipped}`) +
        (r.clientCpuUsPerItem === undefined ? "" : `  (bench client ${r.clientCpuUsPerItem} µs/item)`) +
        breakdown(r)
    )
    return line
  })
  // Issue 13's target: the engine with the project's upstream client, in-process, ≤ 1.05 × p-limit + undici.
  const targets = ["c3", "d"].flatMap((id) => {
    const r = byId.get(id)
    if (r === undefined || floor === undefined) return []
    const wall = r.wallMs / floor.wallMs
    const cpu = r.cpuUsPerItem / floor.cpuUsPerItem
    console.log(
      `target (issue 13) ${id}: engine + the project's upstream client ≤ 1.05 × p-limit + undici — wall ${wall.toFixed(3)} ${wall <= 1.05 ? "✓ pass" : "✗ FAIL"}, CPU ${cpu.toFixed(2)} ${cpu <= 1.05 ? "✓ pass" : "✗ FAIL"}`
    )
    return [{ step: id, wallRatio: Math.round(wall * 1000) / 1000, cpuRatio: Math.round(cpu * 100) / 100, wallPass: wall <= 1.05, cpuPass: cpu <= 1.05 }]
  })
  // A partial run (--only) does not replace the last full ledger.
  const saveTo = ONLY === undefined ? "bench-results/ledger-latest.json" : ".scratch/ledger-partial.json"
  mkdirSync(path.dirname(path.join(root, saveTo)), { recursive: true })
  writeFileSync(
    path.join(root, saveTo),
    JSON.stringify(
      {
        at: new Date().toISOString(),
        node: process.version,
        cores: os.cpus().length,
        loadavg: os.loadavg(),
        workload: { items: ITEMS, latencyMs: LATENCY_MS, concurrency: CONCURRENCY, idealMs: IDEAL_MS, reps: REPS },
        mode,
        rows: table,
        targets
      },
      null,
      2
    )
  )
}

Effect.runPromise(argv.includes("--store-floor") ? storeFloor : ISOLATE ? isolated : program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
