/**
 * `npx tsx scripts/idle-gap.ts [--dist dir]` — what a pause costs the job after it. One compiled
 * service (SQLite, fresh data dir) against the stub upstream runs 2,000-item interaction jobs (20 ms
 * per call, 50 concurrent): eight to warm up, then one after each of several idle gaps (1, 3 and 8 s;
 * the idle collection waits for 5 quiet seconds). For each job it prints the wall time, the service's
 * CPU per item split into its main thread and its helper threads (V8's compilers and GC), and the
 * heap before and after the gap (`/metrics`). With `--trace` the service runs with `--trace-gc
 * --trace-opt` and each job also shows its major collections, scavenges and TurboFan compilations.
 *
 * Session 13 found with it that a full collection made the next job re-optimise its paths (217
 * compilations against 13–30) at 2 × the CPU per item and 1.3–1.4 × the wall time, and that after
 * ordinary jobs the collection gave back 16–133 MB; hence `EventLoop.MIN_GARBAGE_BYTES`.
 */
import { mkdtempSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { interactionsJob } from "./support/interactionsJob.js"
import { procCpuUs, threadCpuUs } from "./support/procCpu.js"
import { root, startProcess, stop, upstreamEnv } from "./support/processes.js"

const argv = process.argv.slice(2)
const distAt = argv.indexOf("--dist")
const DIST = distAt >= 0 ? (argv[distAt + 1] ?? "dist") : "dist"
const TRACE = argv.includes("--trace")
const ITEMS = 2000
const GAPS_S = [1, 3, 8, 1, 8, 3, 8]

const stub = await startProcess([path.join(root, "dist/scripts/stub-upstream.js")], {}, /listening (\d+)/)
const upstream = `http://127.0.0.1:${stub.match}`
await fetch(`${upstream}/__latency/20`, { method: "PUT" })
const service = await startProcess(
  [...(TRACE ? ["--trace-gc", "--trace-opt"] : []), path.join(root, DIST, "src/main.js")],
  { HOST: "127.0.0.1", PORT: "0", DATA_DIR: mkdtempSync(path.join(os.tmpdir(), "pp-idle-gap-")), ...upstreamEnv(upstream) },
  /listening on (http:\/\/\S+)/
)
const pid = service.child.pid
let traced = ""
service.child.stdout?.on("data", (chunk: Buffer) => {
  if (TRACE) traced += chunk.toString()
})

const count = (pattern: RegExp) => (traced.match(pattern) ?? []).length
const job = async (label: string) => {
  traced = ""
  const cpu0 = procCpuUs(pid) ?? NaN
  const threads0 = threadCpuUs(pid) ?? {}
  const wall = await interactionsJob(service.match, label, ITEMS, 50, 180_000, false)
  const cpu1 = procCpuUs(pid) ?? NaN
  const threads1 = threadCpuUs(pid) ?? {}
  const perItem = (a: number | undefined, b: number | undefined) => (((a ?? NaN) - (b ?? NaN)) / ITEMS).toFixed(0)
  const trace = TRACE
    ? ` [major GCs ${count(/Mark-Compact/g)}, scavenges ${count(/Scavenge/g)}, TurboFan compilations ${count(/completed optimizing/g)}]`
    : ""
  return `wall ${Math.round(wall)} ms, CPU ${perItem(cpu1, cpu0)} µs/item (main ${perItem(threads1.main, threads0.main)}, helpers ${perItem(threads1.helpers, threads0.helpers)})${trace}`
}
const heap = async () =>
  (await (await fetch(`${service.match}/metrics`)).text())
    .split("\n")
    .filter((line) => /^pp_(heap_used|process_resident)/.test(line))
    .map((line) => line.replace(/\{.*\}/, "").replace(/ ([\d.e+]+)$/, (_, n: string) => ` ${Math.round(Number(n) / 1e6)} MB`))
    .join(", ")

try {
  for (let i = 0; i < 8; i++) {
    const result = await job(`warm-${i}`)
    if (i >= 5) console.log(`warm-up ${i}: ${result}`)
  }
  for (const [i, gap] of GAPS_S.entries()) {
    const before = await heap()
    await new Promise((resolve) => setTimeout(resolve, gap * 1000))
    const after = await heap()
    console.log(`after ${gap} s idle (${before} → ${after}): ${await job(`gap-${i}`)}`)
  }
} finally {
  await stop(service.child)
  await stop(stub.child)
}
