/**
 * Child processes for the benchmarks (the compiled service, the stub upstream): start one and wait
 * for the line that says it is ready, stop it, and pick a free port for a runner.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as net from "node:net"
import path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root, whether this runs from `scripts/` (tsx) or `dist/scripts/` (compiled). */
export const root = (() => {
  const here = path.dirname(fileURLToPath(import.meta.url))
  return path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? "../../.." : "../..")
})()

/** The service's upstream variables, all pointing at one URL, with the account the benches use. */
/**
 * The benches measure what the service costs per item at high concurrency against a stub without a
 * capacity limit: the upstream budgets must not be the bottleneck there (`npm run bench:budget`
 * measures them).
 */
export const unboundedBudgets: Record<string, string> = Object.fromEntries(
  ["FORUM", "LLM", "MARKET", "NEWS"].flatMap((u) => [
    [`${u}_MAX_CONCURRENT`, "256"],
    [`${u}_ADAPTIVE`, "off"]
  ])
)

export const upstreamEnv = (url: string): Record<string, string> => ({
  ...unboundedBudgets,
  FORUM_API_URL: url,
  LLM_BASE_URL: url,
  MARKET_API_URL: url,
  NEWS_API_URL: url,
  KOL_101_EMAIL: "kol101@example.com",
  KOL_101_PASSWORD: "pw-101"
})

/** `node <args>` with only PATH inherited; resolves with the first capture of `ready` in its output. */
export const startProcess = (args: ReadonlyArray<string>, env: Record<string, string>, ready: RegExp) =>
  new Promise<{ readonly child: ChildProcess; readonly match: string }>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const m = ready.exec(output)
      if (m?.[1] !== undefined) resolve({ child, match: m[1] })
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.on("exit", (code) => reject(new Error(`${args.join(" ")} exited (${code}):\n${output.slice(-3000)}`)))
  })

/** SIGTERM, resolved once the process has exited. */
export const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
  })

/** A free port below the OS's range for outgoing connections (32768+), where none can take it meanwhile. */
export const freePort = (): Promise<number> =>
  new Promise<number>((resolve) => {
    const port = 20000 + Math.floor(Math.random() * 12000)
    const server = net.createServer()
    server.once("error", () => resolve(freePort()))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(port)))
  })
