/**
 * `npm run bench:budget` — does an upstream budget find a capacity nobody told it, and keep finding
 * it when it moves? Two jobs (two concurrent `Engine.run`, maxConcurrent 16 each) call the sandbox's
 * market screen (`GET /screens/{key}`, latency 50 ms) through the real `MarketClient`, one call per
 * item; the sandbox serves only K calls at once and the contenders do not know K:
 *
 *   G1  K = 8, above it 429 + Retry-After 1 s           2 × 500 items   wall/oracle, share of calls 429
 *   G2  K = 8, above it served slower (knee): latency    2 × 500 items   wall/oracle, p99 call latency
 *       50 × max(1, inFlight / 8), never refused
 *   G3  K = 16 → 4 at 3 s → 16 at 8 s, 429 above it     2 × 1500 items  seconds until the 429 rate is
 *                                                                         < 1 % for good, and until the
 *                                                                         throughput is 90 % of K/50 ms;
 *                                                                         both jobs cancelled at 16 s
 *
 * Contenders: the budget (ceiling 32) with `LimitAlgorithm.gradient()` and with `aimd()`; a fixed
 * budget of exactly K = 8 (the oracle: what knowing K gives); no budget (today: 2 × 16 straight at the
 * upstream, the default RetryPolicy waits each 429's Retry-After, 3 retries, so items can fail); and
 * p-limit 16 per job + undici retrying a 429 after its Retry-After up to 3 times. G3 runs the two
 * adaptive budgets and no budget only.
 *
 * Every call is recorded client-side (start, end, outcome ok / 429 / other: in the task for the
 * engine, so a call starts once admitted by the budget); the sandbox gives the route's peak in flight.
 * G3 counts calls in 250 ms windows (429 share by call start, successes by call end) and samples the
 * budget's limit and the sandbox's in-flight every 250 ms, and keeps the budget's limit changes and
 * cooldowns as they happen. Median of 3 runs for G1/G2 (the runs of all contenders interleaved, each
 * with a fresh budget and reset sandbox stats), one run for G3. Prints a table per scenario with the
 * issue's targets, and writes everything to bench-results/budget-latest.json.
 *
 * The sandbox runs in a child process (`dist/src/sandbox/main.js`, controlled over its `/__knobs`,
 * `/__stats` and `/__reset` routes), not in this one: sharing one event loop, the client's work
 * stretches the sandbox's 50 ms sleeps and the other way round, which is the very latency the
 * gradient algorithm reads and G2 reports. Measured on 2 cores: G2 with 32 calls in flight (the knee
 * answers in 200 ms) had a p99 of 396 ms and an event-loop lag p99 of 50 ms (max 135 ms) in one
 * process, against 211 ms and 8 ms with a child. This process's event-loop lag is in the JSON
 * (`loopLag`); `--sandbox=in-process` runs the sandbox here anyway.
 *
 *   npm run bench:budget                                   everything (~5 min on 2 cores)
 *   npm run bench:budget -- --only=G3 --runs=1             a subset (JSON to $TMPDIR/bench-budget-partial.json)
 */
import { NodeHttpClient } from "@effect/platform-node"
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"
import { Cause, Duration, Effect, Exit, Layer, Logger, LogLevel, Option, Schedule, Stream } from "effect"
import * as Budget from "../src/engine/Budget.js"
import * as Engine from "../src/engine/Engine.js"
import type { TaskError } from "../src/engine/Errors.js"
import * as LimitAlgorithm from "../src/engine/LimitAlgorithm.js"
import * as RunControl from "../src/engine/RunControl.js"
import type { RouteKnobsPatch } from "../src/sandbox/Sandbox.js"
import { MarketClient } from "../src/upstream/Market.js"
import { UpstreamConfig } from "../src/upstream/UpstreamConfig.js"
import { root } from "./support/processes.js"
import { pLimitRetrying } from "./support/retryingPeer.js"
import * as BenchSandbox from "./support/sandbox.js"

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

const LATENCY_MS = 50
const JOBS = ["a", "b"] as const
const JOB_CONCURRENCY = 16
const MAX_RETRIES = 3
const RETRY_AFTER_S = 1
const WINDOW_MS = 250
const LOOP_RESOLUTION_MS = 10
/** Items per screen call (`?limit=`): a small body, so the bench measures admission, not JSON. */
const SCREEN_LIMIT = 5

type ScenarioId = "G1" | "G2" | "G3"
const scenarioIds: ReadonlyArray<ScenarioId> = ["G1", "G2", "G3"]

type ContenderId = "oracle" | "gradient" | "aimd" | "none" | "p-limit"

interface Contender {
  readonly id: ContenderId
  readonly label: string
  /** The budget both jobs share; none for the no-budget engine and p-limit. */
  readonly budget: Budget.Options | undefined
}

const contenders: Readonly<Record<ContenderId, Contender>> = {
  oracle: { id: "oracle", label: "budget fixed 8 (oracle)", budget: { key: "market", ceiling: 8, adaptive: false } },
  gradient: {
    id: "gradient",
    label: "budget ≤32, gradient",
    budget: { key: "market", ceiling: 32, algorithm: LimitAlgorithm.gradient() }
  },
  aimd: { id: "aimd", label: "budget ≤32, aimd", budget: { key: "market", ceiling: 32, algorithm: LimitAlgorithm.aimd() } },
  none: { id: "none", label: "no budget (2 × 16)", budget: undefined },
  "p-limit": { id: "p-limit", label: "p-limit 16/job + undici", budget: undefined }
}

interface CapacityChange {
  /** ms after the start of the run */
  readonly at: number
  readonly capacity: number
}

interface Scenario {
  readonly id: ScenarioId
  readonly title: string
  readonly itemsPerJob: number
  /** The screen route's knobs at the start of every run (every knob the bench relies on, so none leaks between scenarios). */
  readonly knobs: RouteKnobsPatch
  readonly capacity: number
  readonly changes: ReadonlyArray<CapacityChange>
  readonly contenders: ReadonlyArray<ContenderId>
  readonly runs: number
  /** Both jobs are cancelled this long (ms) after the start, when given: a budget that never adapts would run on for minutes. */
  readonly stopAt?: number
}

const baseKnobs = {
  latency: { kind: "fixed", ms: LATENCY_MS },
  retryAfter: { kind: "seconds", seconds: RETRY_AFTER_S },
  errorRate: 0,
  rateLimitRate: 0,
  hangRate: 0,
  malformedRate: 0,
  dropRate: 0
} as const satisfies RouteKnobsPatch

const parseArgs = (argv: ReadonlyArray<string>) => {
  const value = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const only = (value("only") ?? scenarioIds.join(",")).split(",").map((s) => s.trim().toUpperCase())
  const unknown = only.filter((s) => !scenarioIds.some((id) => id === s))
  if (unknown.length > 0) throw new Error(`--only: unknown scenario(s) ${unknown.join(", ")}; use ${scenarioIds.join(",")}`)
  const raw = value("sandbox") ?? "child"
  const placement = BenchSandbox.placements.find((p) => p === raw)
  if (placement === undefined) throw new Error(`--sandbox: expected ${BenchSandbox.placements.join(" or ")}, got ${raw}`)
  const runs = Number(value("runs") ?? 3)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer`)
  return { only: scenarioIds.filter((id) => only.includes(id)), placement, runs, partial: only.length < scenarioIds.length || runs !== 3 }
}
const args = parseArgs(process.argv.slice(2))

/** G1 and G2: the same two jobs against a fixed hidden capacity; only what happens above it differs. */
const fixedCapacity = (id: ScenarioId, title: string, capacity: number, above: RouteKnobsPatch): Scenario => ({
  id,
  title,
  itemsPerJob: 500,
  knobs: { ...baseKnobs, capacity, ...above },
  capacity,
  changes: [],
  contenders: ["oracle", "gradient", "aimd", "none", "p-limit"],
  runs: args.runs
})

const scenarios: ReadonlyArray<Scenario> = [
  fixedCapacity("G1", "429 above a hidden capacity of 8 (Retry-After 1 s)", 8, { overCapacity: "429", kneeFactor: 0 }),
  fixedCapacity("G2", "latency knee above a hidden capacity of 8 (50 ms × max(1, inFlight/8), never refused)", 8, {
    overCapacity: "queue",
    kneeFactor: 1
  }),
  {
    id: "G3",
    title: "capacity 16 → 4 at 3 s → 16 at 8 s (429 + Retry-After 1 s above it)",
    itemsPerJob: 1500,
    knobs: { ...baseKnobs, capacity: 16, overCapacity: "429", kneeFactor: 0 },
    capacity: 16,
    changes: [
      { at: 3_000, capacity: 4 },
      { at: 8_000, capacity: 16 }
    ],
    contenders: ["gradient", "aimd", "none"],
    runs: 1,
    // The ideal is ~13 s (3 s at 320/s, 5 s at 80/s, the rest at 320/s); 8 s after the last change is 4 × the target.
    stopAt: 16_000
  }
]

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

type Outcome = "ok" | "429" | "other"

/** One upstream call as the client saw it; ms since the start of the run. */
interface Call {
  readonly start: number
  readonly end: number
  readonly outcome: Outcome
}

/** Every 250 ms: the budget's state (when there is one) and the sandbox's calls in flight. */
interface Sample {
  readonly t: number
  readonly upstreamInFlight: number
  readonly budget: { readonly limit: number; readonly inFlight: number; readonly waiting: number; readonly coolingDown: boolean } | null
}

/** The budget's own announcements: a limit change, or a cooldown begun by one of its calls. */
type BudgetEvent =
  | { readonly t: number; readonly kind: "limit"; readonly limit: number }
  | { readonly t: number; readonly kind: "cooldown"; readonly pauseMs: number }

interface RunRecord {
  readonly wallMs: number
  readonly calls: ReadonlyArray<Call>
  readonly failedItems: number
  readonly unfinished: number
  readonly load: BenchSandbox.RouteLoad
  readonly samples: ReadonlyArray<Sample>
  readonly events: ReadonlyArray<BudgetEvent>
  readonly snapshot: Budget.Snapshot | undefined
  /** How late this process's event loop ran during the run (ms): a busy bench stretches every call it times. */
  readonly loopLag: { readonly p99Ms: number; readonly maxMs: number }
}

const outcomeOf = (exit: Exit.Exit<unknown, TaskError>): Outcome =>
  Exit.isSuccess(exit)
    ? "ok"
    : Option.match(Cause.failureOption(exit.cause), {
        onNone: () => "other",
        onSome: (error) => (error._tag === "RateLimited" ? "429" : "other")
      })

const keysFor = (job: string, items: number) => Array.from({ length: items }, (_, i) => `${job}${i}`)

/** Items that ended failed, and items cut off by the scenario's time cap (cancelled). */
interface JobsOutcome {
  readonly failed: number
  readonly unfinished: number
}

/**
 * Both jobs through `Engine.run`, sharing `budget` when there is one; both are cancelled at `stopAt`
 * (ms after the start) when given.
 */
const engineJobs = (
  items: number,
  budget: Budget.Budget | undefined,
  record: (call: Call) => void,
  since: () => number,
  stopAt: number | undefined
) =>
  Effect.gen(function* () {
    const market = yield* MarketClient
    const controls = yield* Effect.all(JOBS.map(() => RunControl.make))
    if (stopAt !== undefined) {
      yield* Effect.forkScoped(Effect.zipRight(until(stopAt, since), Effect.forEach(controls, (c) => c.cancel, { discard: true })))
    }
    const task = (key: string) =>
      Effect.suspend(() => {
        const start = since()
        return market.screen(key, SCREEN_LIMIT).pipe(
          Effect.onExit((exit) => Effect.sync(() => record({ start, end: since(), outcome: outcomeOf(exit) })))
        )
      })
    const job = (name: string, control: RunControl.RunControl) =>
      Engine.runWithSummary(
        keysFor(name, items),
        task,
        { name: "bench-budget", maxConcurrent: JOB_CONCURRENCY, ...(budget === undefined ? {} : { budget }) },
        { control }
      ).pipe(Effect.map(({ summary }) => summary))
    const summaries = yield* Effect.all(
      JOBS.map((name, i) => {
        const control = controls[i]
        return control === undefined ? Effect.dieMessage("a job without its control") : job(name, control)
      }),
      { concurrency: "unbounded" }
    )
    return {
      failed: summaries.reduce((n, s) => n + s.failed, 0),
      unfinished: summaries.reduce((n, s) => n + s.cancelled, 0)
    } satisfies JobsOutcome
  })

/** Both jobs as p-limit loops of 16 each, nothing shared between them. */
const peerJobs = (url: string, items: number, record: (call: Call) => void, t0: number) =>
  Effect.promise(async () => {
    const outcomes = await Promise.all(
      JOBS.map((name) =>
        pLimitRetrying({
          urls: keysFor(name, items).map((key) => `${url}/screens/${key}?limit=${SCREEN_LIMIT}`),
          concurrency: JOB_CONCURRENCY,
          maxRetries: MAX_RETRIES,
          defaultRetryAfterMs: RETRY_AFTER_S * 1000,
          onCall: (c) =>
            record({ start: c.start - t0, end: c.end - t0, outcome: c.status === 200 ? "ok" : c.status === 429 ? "429" : "other" })
        })
      )
    )
    return { failed: outcomes.reduce((n, o) => n + o.failed, 0), unfinished: 0 } satisfies JobsOutcome
  })

/** Sleeps until `at` ms after the run's start. */
const until = (at: number, since: () => number) => Effect.suspend(() => Effect.sleep(Duration.millis(Math.max(0, at - since()))))

const runOnce = (
  scenario: Scenario,
  contender: Contender,
  sandbox: BenchSandbox.SandboxControl,
  market: Layer.Layer<MarketClient>,
  items: number
): Effect.Effect<RunRecord> =>
  Effect.scoped(
    Effect.gen(function* () {
      yield* sandbox.setKnobs("screen", scenario.knobs)
      // The last run's final responses close a moment after their clients have read them: start on an
      // idle upstream (a run that began with another's calls still in flight learned a capacity of 4).
      yield* sandbox.load("screen").pipe(
        Effect.filterOrFail((load) => load.inFlight === 0, () => "busy"),
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))),
        Effect.ignore
      )
      yield* Effect.sleep("100 millis")
      yield* sandbox.reset
      const budget = contender.budget === undefined ? undefined : yield* Budget.make(contender.budget)
      const calls: Array<Call> = []
      const samples: Array<Sample> = []
      const events: Array<BudgetEvent> = []
      const record = (call: Call) => void calls.push(call)

      const t0 = performance.now()
      const since = () => performance.now() - t0

      if (budget !== undefined) {
        const changes = yield* budget.changes
        yield* Effect.forkScoped(
          Stream.runForEach(changes, (change) =>
            Effect.sync(() => {
              const t = Math.round(since())
              events.push(
                change._tag === "Limit"
                  ? { t, kind: "limit", limit: change.limit }
                  : { t, kind: "cooldown", pauseMs: Math.round(change.until - Date.now()) }
              )
            })
          )
        )
      }
      const sample = Effect.gen(function* () {
        const t = Math.round(since())
        const load = yield* sandbox.load("screen")
        const snapshot = budget === undefined ? undefined : yield* budget.snapshot
        samples.push({
          t,
          upstreamInFlight: load.inFlight,
          budget:
            snapshot === undefined
              ? null
              : {
                  limit: snapshot.limit,
                  inFlight: snapshot.inFlight,
                  waiting: snapshot.waiting,
                  coolingDown: snapshot.cooldownUntil !== undefined
                }
        })
      })
      yield* Effect.forkScoped(
        Effect.suspend(() => until(Math.ceil(since() / WINDOW_MS) * WINDOW_MS, since)).pipe(
          Effect.zipRight(sample),
          Effect.repeat(Schedule.forever)
        )
      )
      yield* Effect.forkScoped(
        Effect.forEach(
          scenario.changes,
          (change) => Effect.zipRight(until(change.at, since), sandbox.setKnobs("screen", { capacity: change.capacity })),
          { discard: true }
        )
      )

      const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
      loop.enable()
      const { failed: failedItems, unfinished } =
        contender.id === "p-limit"
          ? yield* peerJobs(sandbox.url, items, record, t0)
          : yield* Effect.provide(engineJobs(items, budget, record, since, scenario.stopAt), market)
      const wallMs = since()
      loop.disable()
      const snapshot = budget === undefined ? undefined : yield* budget.snapshot
      const load = yield* sandbox.load("screen")
      return {
        wallMs,
        calls,
        failedItems,
        unfinished,
        load,
        samples,
        events,
        snapshot,
        // The histogram holds whole timer intervals: the lag is what exceeds the timer's own period.
        loopLag: {
          p99Ms: Math.max(0, loop.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
          maxMs: Math.max(0, loop.max / 1e6 - LOOP_RESOLUTION_MS)
        }
      }
    })
  )

// ---------------------------------------------------------------------------------------------
// Measures
// ---------------------------------------------------------------------------------------------

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const hi = sorted[mid] ?? Number.NaN
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? hi) + hi) / 2
}

const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
}

const round = (x: number, digits = 0) => Number(x.toFixed(digits))

/** One run in numbers. */
interface RunSummary {
  readonly wallMs: number
  readonly calls: number
  readonly calls429: number
  readonly share429: number
  /** Client-side duration of the successful calls. */
  readonly p50Ms: number
  readonly p99Ms: number
  readonly peakInFlight: number
  /** The sandbox's own count of calls, and of those it turned away over capacity. */
  readonly upstreamCalls: number
  readonly upstreamRejected: number
  readonly failedItems: number
  /** Cut off by the scenario's time cap. */
  readonly unfinished: number
  /** The budget's own count: every 429 that moved the end of the pause later (so one pause counts several times). */
  readonly cooldowns: number | null
  /** Pauses of admission, overlapping cooldowns merged, and their total length. */
  readonly pauses: number | null
  readonly pausedMs: number | null
  readonly finalLimit: number | null
  /** The limit samples over the second half of the run: median (where the limit settled), lowest, highest. */
  readonly settledLimit: number | null
  readonly limitRange: readonly [number, number] | null
  readonly loopLag: RunRecord["loopLag"]
}

/** Cooldowns merged into pauses of admission: [start, end] ms since the start of the run. */
const pausesOf = (events: ReadonlyArray<BudgetEvent>): ReadonlyArray<readonly [number, number]> => {
  const merged: Array<[number, number]> = []
  for (const e of events) {
    if (e.kind !== "cooldown") continue
    const last = merged.at(-1)
    if (last !== undefined && e.t <= last[1]) last[1] = Math.max(last[1], e.t + e.pauseMs)
    else merged.push([e.t, e.t + e.pauseMs])
  }
  return merged
}

const pausedMsOf = (pauses: ReadonlyArray<readonly [number, number]>) => pauses.reduce((ms, [from, to]) => ms + (to - from), 0)

const summarize = (r: RunRecord): RunSummary => {
  const calls429 = r.calls.filter((c) => c.outcome === "429").length
  const okDurations = r.calls.filter((c) => c.outcome === "ok").map((c) => c.end - c.start)
  const laterLimits = r.samples.flatMap((s) => (s.budget !== null && s.t >= r.wallMs / 2 ? [s.budget.limit] : []))
  const pauses = pausesOf(r.events)
  return {
    wallMs: round(r.wallMs),
    calls: r.calls.length,
    calls429,
    share429: r.calls.length === 0 ? 0 : round(calls429 / r.calls.length, 4),
    p50Ms: round(percentile(okDurations, 50), 1),
    p99Ms: round(percentile(okDurations, 99), 1),
    peakInFlight: r.load.peakInFlight,
    upstreamCalls: r.load.calls,
    upstreamRejected: r.load.rejectedOverCapacity,
    failedItems: r.failedItems,
    unfinished: r.unfinished,
    cooldowns: r.snapshot?.cooldowns ?? null,
    pauses: r.snapshot === undefined ? null : pauses.length,
    pausedMs: r.snapshot === undefined ? null : pausedMsOf(pauses),
    finalLimit: r.snapshot?.limit ?? null,
    settledLimit: laterLimits.length === 0 ? null : median(laterLimits),
    limitRange: laterLimits.length === 0 ? null : [Math.min(...laterLimits), Math.max(...laterLimits)],
    loopLag: { p99Ms: round(r.loopLag.p99Ms, 1), maxMs: round(r.loopLag.maxMs, 1) }
  }
}

/** A contender's row: medians over its runs (the peak in flight: the highest of any run). */
interface Row {
  readonly contender: ContenderId
  readonly label: string
  readonly wallMs: number
  readonly ratio: number
  readonly share429: number
  readonly p99Ms: number
  readonly peakInFlight: number
  readonly failedItems: number
  readonly pauses: number | null
  readonly pausedMs: number | null
  readonly settledLimit: number | null
  /** Lowest and highest limit sampled over the second halves of all runs. */
  readonly limitRange: readonly [number, number] | null
  readonly runsMs: ReadonlyArray<number>
}

const nullableMedian = (xs: ReadonlyArray<number | null>): number | null => {
  const present = xs.flatMap((x) => (x === null ? [] : [x]))
  return present.length === 0 ? null : median(present)
}

const rowOf = (contender: Contender, runs: ReadonlyArray<RunSummary>, oracleWallMs: number): Row => {
  const wallMs = median(runs.map((r) => r.wallMs))
  const ranges = runs.flatMap((r) => (r.limitRange === null ? [] : [r.limitRange]))
  return {
    contender: contender.id,
    label: contender.label,
    wallMs: round(wallMs),
    ratio: round(wallMs / oracleWallMs, 3),
    share429: median(runs.map((r) => r.share429)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    peakInFlight: Math.max(...runs.map((r) => r.peakInFlight)),
    failedItems: median(runs.map((r) => r.failedItems)),
    pauses: nullableMedian(runs.map((r) => r.pauses)),
    pausedMs: nullableMedian(runs.map((r) => r.pausedMs)),
    settledLimit: nullableMedian(runs.map((r) => r.settledLimit)),
    limitRange: ranges.length === 0 ? null : [Math.min(...ranges.map(([lo]) => lo)), Math.max(...ranges.map(([, hi]) => hi))],
    runsMs: runs.map((r) => r.wallMs)
  }
}

/** G3's 250 ms windows: calls started (and how many of them were answered 429), successes ended. */
interface Window {
  readonly t: number
  readonly starts: number
  readonly throttled: number
  readonly ok: number
}

const windowsOf = (r: RunRecord): ReadonlyArray<Window> => {
  const count = Math.ceil(r.wallMs / WINDOW_MS)
  const windows = Array.from({ length: count }, (_, i) => ({ t: i * WINDOW_MS, starts: 0, throttled: 0, ok: 0 }))
  const at = (ms: number) => windows[Math.min(count - 1, Math.max(0, Math.floor(ms / WINDOW_MS)))]
  for (const c of r.calls) {
    const started = at(c.start)
    if (started !== undefined) {
      started.starts++
      if (c.outcome === "429") started.throttled++
    }
    const ended = at(c.end)
    if (ended !== undefined && c.outcome === "ok") ended.ok++
  }
  return windows
}

/** How one capacity phase went: seconds from the change until it was handled, null when never. */
interface Phase {
  readonly from: number
  readonly to: number
  readonly capacity: number
  /** The start of the first window from which every window of the phase had < 1 % of its calls answered 429. */
  readonly settle429S: number | null
  /** The end of the first window with ≥ 90 % of capacity / latency successes. */
  readonly reach90S: number | null
  /** Pauses of admission that began in the phase, and how long admission was paused in it. */
  readonly pauses: number
  readonly pausedMs: number
  readonly limitAtEnd: number | null
}

const phaseOf = (
  windows: ReadonlyArray<Window>,
  events: ReadonlyArray<BudgetEvent>,
  samples: ReadonlyArray<Sample>,
  from: number,
  to: number,
  capacity: number
): Phase => {
  const mine = windows.filter((w) => w.t >= from && w.t < to)
  let settleAt: number | null = null
  for (let i = mine.length - 1; i >= 0; i--) {
    const w = mine[i]
    if (w === undefined || (w.starts > 0 && w.throttled / w.starts >= 0.01)) break
    settleAt = w.t
  }
  const target = 0.9 * capacity * (WINDOW_MS / LATENCY_MS)
  const reached = mine.find((w) => w.ok >= target)
  const lastSample = samples.filter((s) => s.t < to).at(-1)
  const pauses = pausesOf(events)
  return {
    from,
    to: round(to),
    capacity,
    settle429S: settleAt === null ? null : (settleAt - from) / 1000,
    reach90S: reached === undefined ? null : (reached.t + WINDOW_MS - from) / 1000,
    pauses: pauses.filter(([start]) => start >= from && start < to).length,
    pausedMs: pauses.reduce((ms, [start, end]) => ms + Math.max(0, Math.min(end, to) - Math.max(start, from)), 0),
    limitAtEnd: lastSample?.budget?.limit ?? null
  }
}

const phasesOf = (scenario: Scenario, r: RunRecord): ReadonlyArray<Phase> => {
  const windows = windowsOf(r)
  const starts = [{ at: 0, capacity: scenario.capacity }, ...scenario.changes]
  // The last phase ends when the runs do, or at the cut: the windows after it have no calls and say nothing.
  const end = Math.min(r.wallMs, scenario.stopAt ?? Number.POSITIVE_INFINITY)
  return starts.map((c, i) => phaseOf(windows, r.events, r.samples, c.at, starts[i + 1]?.at ?? end, c.capacity))
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

const pct = (x: number) => `${(100 * x).toFixed(1)}%`
const secs = (x: number | null) => (x === null ? "never" : `${x.toFixed(2)} s`)
const mark = (ok: boolean) => (ok ? "✓" : "✗")
const cell = (x: number | null) => (x === null ? "–" : String(x))
const limitCell = (settled: number | null, range: readonly [number, number] | null) =>
  settled === null ? "–" : range === null || range[0] === range[1] ? String(settled) : `${settled} (${range[0]}–${range[1]})`

const table = (header: ReadonlyArray<readonly [string, number]>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(header[i]?.[1] ?? 0) : c.padStart(header[i]?.[1] ?? 0))).join("  ").trimEnd()
  return [line(header.map(([h]) => h)), ...rows.map(line)].join("\n")
}

const printG12 = (scenario: Scenario, rows: ReadonlyArray<Row>, oracleWallMs: number) => {
  console.log(`\n${scenario.id} — ${scenario.title}`)
  console.log(`   2 jobs × ${scenario.itemsPerJob} items, maxConcurrent ${JOB_CONCURRENCY} each; median of ${scenario.runs}; oracle ${round(oracleWallMs)} ms (ideal ${(2 * scenario.itemsPerJob * LATENCY_MS) / scenario.capacity} ms)\n`)
  console.log(
    table(
      [
        ["contender", 26],
        ["wall ms", 7],
        ["×oracle", 7],
        ["429 share", 9],
        ["p99 ms", 6],
        ["p99/50ms", 8],
        ["peak", 4],
        ["failed", 6],
        ["pauses", 6],
        ["paused s", 8],
        ["limit", 11],
        ["runs (ms)", 0]
      ],
      rows.map((r) => [
        r.label,
        String(r.wallMs),
        r.ratio.toFixed(3),
        pct(r.share429),
        r.p99Ms.toFixed(1),
        (r.p99Ms / LATENCY_MS).toFixed(2),
        String(r.peakInFlight),
        String(r.failedItems),
        cell(r.pauses),
        r.pausedMs === null ? "–" : (r.pausedMs / 1000).toFixed(1),
        limitCell(r.settledLimit, r.limitRange),
        r.runsMs.join(" / ")
      ])
    )
  )
  console.log(
    "   (429 share: of all calls made; p99: client-side duration of successful calls; peak: sandbox; pauses: the budget's cooldowns,\n" +
      "    overlapping ones merged, and the time admission was paused; limit: median (lowest–highest) sampled over the runs' second halves)"
  )
}

interface Target {
  readonly scenario: ScenarioId
  readonly contender: ContenderId
  readonly text: string
  readonly met: boolean
}

const g1Targets = (rows: ReadonlyArray<Row>): ReadonlyArray<Target> =>
  rows
    .filter((r) => r.contender === "gradient" || r.contender === "aimd")
    .map((r) => {
      const met = r.ratio <= 1.15 && r.share429 <= 0.02
      return {
        scenario: "G1",
        contender: r.contender,
        met,
        text: `G1 ${r.contender.padEnd(8)} ${r.ratio.toFixed(3)} × oracle (≤ 1.15) ${mark(r.ratio <= 1.15)}, ${pct(r.share429)} of calls 429 (≤ 2%) ${mark(r.share429 <= 0.02)}`
      }
    })

const g2Targets = (rows: ReadonlyArray<Row>): ReadonlyArray<Target> =>
  rows
    .filter((r) => r.contender === "gradient" || r.contender === "aimd")
    .map((r) => {
      const p99Ratio = r.p99Ms / LATENCY_MS
      return {
        scenario: "G2",
        contender: r.contender,
        met: r.ratio <= 1.15 && p99Ratio <= 1.5,
        text: `G2 ${r.contender.padEnd(8)} ${r.ratio.toFixed(3)} × oracle (≤ 1.15) ${mark(r.ratio <= 1.15)}, p99 ${r.p99Ms.toFixed(1)} ms = ${p99Ratio.toFixed(2)} × unloaded (≤ 1.5) ${mark(p99Ratio <= 1.5)}`
      }
    })

interface G3Result {
  readonly contender: ContenderId
  readonly label: string
  readonly summary: RunSummary
  readonly phases: ReadonlyArray<Phase>
  readonly windows: ReadonlyArray<Window>
  readonly samples: ReadonlyArray<Sample>
  readonly events: ReadonlyArray<BudgetEvent>
}

/** A phase is adapted to when both its 429 rate settled and its throughput reached 90 %, within 2 s. */
const adaptedS = (p: Phase | undefined): number | null =>
  p === undefined || p.settle429S === null || p.reach90S === null ? null : Math.max(p.settle429S, p.reach90S)

const printG3 = (scenario: Scenario, results: ReadonlyArray<G3Result>) => {
  console.log(`\n${scenario.id} — ${scenario.title}`)
  console.log(
    `   2 jobs × ${scenario.itemsPerJob} items, maxConcurrent ${JOB_CONCURRENCY} each; one run each; windows of ${WINDOW_MS} ms; ` +
      `ideal wall ~13 s; runs cut at ${(scenario.stopAt ?? 0) / 1000} s (left: items not finished by then)\n`
  )
  console.log(
    table(
      [
        ["contender", 20],
        ["wall ms", 7],
        ["left", 4],
        ["429 share", 9],
        ["failed", 6],
        ["start: thr≥90%", 14],
        ["↓4: 429<1%", 10],
        ["↓4: thr≥90%", 11],
        ["↓4 limit", 8],
        ["↑16: 429<1%", 11],
        ["↑16: thr≥90%", 12],
        ["↑16 limit", 9],
        ["pauses", 6]
      ],
      results.map(({ label, summary, phases }) => {
        const [start, down, up] = phases
        return [
          label,
          String(summary.wallMs),
          String(summary.unfinished),
          pct(summary.share429),
          String(summary.failedItems),
          secs(start?.reach90S ?? null),
          secs(down?.settle429S ?? null),
          secs(down?.reach90S ?? null),
          cell(down?.limitAtEnd ?? null),
          secs(up?.settle429S ?? null),
          secs(up?.reach90S ?? null),
          cell(up?.limitAtEnd ?? null),
          phases.map((p) => p.pauses).join("+")
        ]
      })
    )
  )
  console.log(
    "   (429<1%: from the change until every later 250 ms window of the phase has < 1% of its calls 429; thr≥90%: until a window has\n" +
      "    ≥ 90% of capacity/50 ms successes; limit: the budget's at the end of the phase; pauses of admission begun per phase, start+↓+↑)"
  )
}

const g3Targets = (results: ReadonlyArray<G3Result>): ReadonlyArray<Target> =>
  results
    .filter((r) => r.contender === "gradient" || r.contender === "aimd")
    .map((r) => {
      const down = adaptedS(r.phases[1])
      const up = adaptedS(r.phases[2])
      const ok = (s: number | null) => s !== null && s <= 2
      return {
        scenario: "G3",
        contender: r.contender,
        met: ok(down) && ok(up),
        text: `G3 ${r.contender.padEnd(8)} 16→4 adapted in ${secs(down)} (≤ 2 s) ${mark(ok(down))}, 4→16 in ${secs(up)} (≤ 2 s) ${mark(ok(up))}`
      }
    })

/** JSON with anything that fits in 120 characters on one line: the samples and windows stay readable and the file small. */
const formatJson = (value: unknown, indent = ""): string => {
  const flat = JSON.stringify(value) ?? "null"
  if (flat.length <= 120 || value === null || typeof value !== "object") return flat
  const inner = `${indent}  `
  if (Array.isArray(value)) return `[\n${value.map((v: unknown) => inner + formatJson(v, inner)).join(",\n")}\n${indent}]`
  const entries = Object.entries(value).filter(([, v]) => v !== undefined)
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${formatJson(v, inner)}`).join(",\n")}\n${indent}}`
}

// ---------------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------------

/**
 * Which code was measured: src/ changes while the algorithms are tuned, and a result means little
 * without its commit and the files that differed from it (as compiled at the start of the run).
 */
const sourceState = (): { readonly commit: string; readonly uncommitted: ReadonlyArray<string> } | undefined => {
  try {
    const git = (...gitArgs: ReadonlyArray<string>) => execFileSync("git", gitArgs, { cwd: root, encoding: "utf8" })
    const uncommitted = git("status", "--porcelain", "--", "src").split("\n").filter((line) => line !== "").map((line) => line.slice(3))
    return { commit: git("rev-parse", "--short", "HEAD").trim(), uncommitted }
  } catch {
    return undefined // not a git checkout
  }
}

const marketLayer = (url: string): Layer.Layer<MarketClient> =>
  MarketClient.layer.pipe(Layer.provide(Layer.mergeAll(NodeHttpClient.layerUndici, UpstreamConfig.allAt(url))))

const program = Effect.gen(function* () {
  const began = performance.now()
  // Other processes on the machine stretch every wall time here: the load average goes in the JSON.
  const loadBefore = os.loadavg().map((x) => round(x, 2))
  const source = sourceState()
  const sandbox = yield* BenchSandbox.start(args.placement, 42)
  // Built once: the undici pool's connections are reused across runs, as in a long-lived service.
  const market = Layer.succeedContext(yield* Layer.build(marketLayer(sandbox.url)))

  // Warm-up (untimed): JIT, connections, the budget's code paths.
  const g1 = scenarios[0]
  if (g1 !== undefined) {
    for (const id of ["oracle", "gradient", "p-limit"] as const) yield* runOnce(g1, contenders[id], sandbox, market, 100)
  }

  const json: Record<string, unknown> = {}
  const targets: Array<Target> = []
  /** Every timed run's event-loop lag p99: a large one means the bench itself, not the budget, set the times. */
  const lags: Array<number> = []
  for (const scenario of scenarios.filter((s) => args.only.includes(s.id))) {
    if (scenario.id === "G3") {
      const results: Array<G3Result> = []
      for (const id of scenario.contenders) {
        const record = yield* runOnce(scenario, contenders[id], sandbox, market, scenario.itemsPerJob)
        const summary = summarize(record)
        lags.push(summary.loopLag.p99Ms)
        results.push({
          contender: id,
          label: contenders[id].label,
          summary,
          phases: phasesOf(scenario, record),
          windows: windowsOf(record),
          samples: record.samples,
          events: record.events
        })
      }
      printG3(scenario, results)
      targets.push(...g3Targets(results))
      json[scenario.id] = { title: scenario.title, itemsPerJob: scenario.itemsPerJob, knobs: scenario.knobs, changes: scenario.changes, results }
      continue
    }
    // Runs interleaved (oracle, gradient, …, oracle, gradient, …) so a slow spell of the machine hits every contender alike.
    // Per run in the JSON: the summary, the 250 ms samples, the pauses, and the budget's first events
    // (an oscillating limit makes thousands of them; G3 keeps all).
    const runs = new Map<
      ContenderId,
      Array<{
        readonly summary: RunSummary
        readonly samples: ReadonlyArray<Sample>
        readonly pauses: ReadonlyArray<readonly [number, number]>
        readonly eventCount: number
        readonly firstEvents: ReadonlyArray<BudgetEvent>
      }>
    >()
    for (let r = 0; r < scenario.runs; r++) {
      for (const id of scenario.contenders) {
        const record = yield* runOnce(scenario, contenders[id], sandbox, market, scenario.itemsPerJob)
        const mine = runs.get(id) ?? []
        const summary = summarize(record)
        lags.push(summary.loopLag.p99Ms)
        mine.push({
          summary,
          samples: record.samples,
          pauses: pausesOf(record.events),
          eventCount: record.events.length,
          firstEvents: record.events.slice(0, 200)
        })
        runs.set(id, mine)
      }
    }
    const oracleWallMs = median((runs.get("oracle") ?? []).map((r) => r.summary.wallMs))
    const rows = scenario.contenders.map((id) => rowOf(contenders[id], (runs.get(id) ?? []).map((r) => r.summary), oracleWallMs))
    printG12(scenario, rows, oracleWallMs)
    targets.push(...(scenario.id === "G1" ? g1Targets(rows) : g2Targets(rows)))
    json[scenario.id] = {
      title: scenario.title,
      itemsPerJob: scenario.itemsPerJob,
      knobs: scenario.knobs,
      oracleWallMs,
      rows,
      runs: Object.fromEntries(runs)
    }
  }

  const tookS = (performance.now() - began) / 1000
  console.log(`\nTargets (issue):`)
  for (const t of targets) console.log(`  ${t.text}`)
  console.log(
    `\nbench:budget took ${tookS.toFixed(0)} s (node ${process.version}, ${os.cpus().length} cores, sandbox ${sandbox.placement === "child" ? "in a child process" : "in-process"}; ` +
      `load average ${loadBefore.join(" ")} before, ${os.loadavg().map((x) => x.toFixed(2)).join(" ")} after; ` +
      `this process's event-loop lag p99 ${median(lags).toFixed(1)} ms median, ${Math.max(...lags).toFixed(1)} ms worst run)`
  )
  if (source !== undefined) {
    const changed = source.uncommitted.length === 0 ? "" : ` + uncommitted ${source.uncommitted.join(", ")}`
    console.log(`src: ${source.commit}${changed}`)
  }
  // A partial run (--only, --runs) must not replace the full results.
  const out = args.partial ? path.join(os.tmpdir(), "bench-budget-partial.json") : path.join(root, "bench-results/budget-latest.json")
  mkdirSync(path.dirname(out), { recursive: true })
  writeFileSync(
    out,
    formatJson({
      at: new Date().toISOString(),
      node: process.version,
      cores: os.cpus().length,
      sandbox: sandbox.placement,
      source: source ?? null,
      loadAverage: { before: loadBefore, after: os.loadavg().map((x) => round(x, 2)) },
      tookS: round(tookS),
      targets,
      ...json
    }) + "\n"
  )
  console.log(`results: ${args.partial ? out : path.relative(root, out)}`)
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))

Effect.runPromise(program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
