/**
 * Flame summaries for `bench:ledger`: a V8 CPU profile (from the inspector's `Profiler.stop` or a
 * `--cpu-prof` file) reduced to the few KB a person reads — the functions with the most self time
 * (file:line, % of busy samples) and the same samples summed by package and by file. Raw profiles
 * are megabytes and stay out of the repository; these summaries are what `bench-results/` keeps.
 */
import { Schema } from "effect"

const CallFrame = Schema.Struct({
  functionName: Schema.String,
  url: Schema.String,
  lineNumber: Schema.Number,
  columnNumber: Schema.Number
})
const ProfileNode = Schema.Struct({ id: Schema.Number, callFrame: CallFrame })

/** The parts of a V8 `Profiler.Profile` the summary reads. */
export const CpuProfile = Schema.Struct({
  nodes: Schema.Array(ProfileNode),
  startTime: Schema.Number,
  endTime: Schema.Number,
  samples: Schema.Array(Schema.Number),
  timeDeltas: Schema.Array(Schema.Number)
})
export type CpuProfile = typeof CpuProfile.Type

export const decodeProfile = Schema.decodeUnknownEither(CpuProfile)

export interface Row {
  readonly name: string
  readonly selfMs: number
  readonly pct: number
}

export interface Summary {
  readonly busyMs: number
  readonly idleMs: number
  readonly samples: number
  readonly functions: ReadonlyArray<Row>
  readonly packages: ReadonlyArray<Row>
  readonly files: ReadonlyArray<Row>
}

const SPECIAL = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"])

/** Where a frame's code lives, shortened: `effect/internal/fiberRuntime.js`, `src/upstream/http.js`, `node:internal/…`. */
const fileOf = (url: string, functionName: string): string => {
  if (url === "") return SPECIAL.has(functionName) ? functionName : "(native)"
  const nm = url.lastIndexOf("/node_modules/")
  if (nm >= 0) return url.slice(nm + "/node_modules/".length).replace(/\/dist\/(esm|cjs)\//, "/")
  const dist = url.indexOf("/dist/")
  if (dist >= 0) return url.slice(dist + "/dist/".length)
  return url.replace(/^file:\/\//, "")
}

const packageOf = (file: string): string => {
  if (file.startsWith("(")) return file
  if (file.startsWith("node:")) return file.startsWith("node:internal/") ? `node:${file.split("/")[1] ?? "internal"}` : file
  const parts = file.split("/")
  if (file.startsWith("@")) return `${parts[0]}/${parts[1]}`
  if (parts[0] === "src" || parts[0] === "scripts" || parts[0] === "test") return parts.slice(0, 2).join("/")
  return parts[0] ?? file
}

/**
 * Self time per function (a sample's time is the delta to the next one), optionally only the samples
 * taken within [fromUs, toUs] on the profile's clock (the monotonic clock `process.hrtime` reads).
 */
export const summarise = (profile: CpuProfile, window?: { readonly fromUs: number; readonly toUs: number }): Summary => {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  const byFile = new Map<string, number>()
  let idle = 0
  let busy = 0
  let samples = 0
  let at = profile.startTime
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us)
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0
    const us = profile.timeDeltas[i + 1] ?? 0
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) continue
    const frame = frames.get(profile.samples[i] ?? -1)
    if (frame === undefined) continue
    samples++
    if (frame.functionName === "(idle)") {
      idle += us
      continue
    }
    busy += us
    const file = fileOf(frame.url, frame.functionName)
    // lineNumber is 0-based in profiles; the compiled file's line (dist/…js, close to the .ts source).
    const where = frame.url === "" ? "" : ` ${file}:${frame.lineNumber + 1}`
    add(byFunction, `${frame.functionName === "" ? "(anonymous)" : frame.functionName}${where}`, us)
    add(byFile, file, us)
    add(byPackage, packageOf(file), us)
  }
  const rows = (map: Map<string, number>, n: number): ReadonlyArray<Row> =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, selfMs: Math.round(us / 100) / 10, pct: busy === 0 ? 0 : Math.round((1000 * us) / busy) / 10 }))
  return {
    busyMs: Math.round(busy / 1000),
    idleMs: Math.round(idle / 1000),
    samples,
    functions: rows(byFunction, 25),
    packages: rows(byPackage, 15),
    files: rows(byFile, 20)
  }
}

/** The summary as the text file `bench-results/ledger-profiles/<step>.txt` holds. */
export const render = (title: string, summary: Summary, note: string): string => {
  const table = (heading: string, rows: ReadonlyArray<Row>) =>
    [heading, ...rows.map((r) => `${r.pct.toFixed(1).padStart(6)}% ${r.selfMs.toFixed(1).padStart(9)} ms  ${r.name}`)].join("\n")
  return [
    title,
    `${note}`,
    `busy ${summary.busyMs} ms, idle ${summary.idleMs} ms, ${summary.samples} samples; % of busy (non-idle) self time`,
    "",
    table("top 25 functions by self time (file:line of the compiled js)", summary.functions),
    "",
    table("by package / src directory", summary.packages),
    "",
    table("by file", summary.files),
    ""
  ].join("\n")
}
