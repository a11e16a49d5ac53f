/**
 * Runs the real service as a child process on a free port, for tests that kill and restart it: the
 * compiled `dist/src/main.js` when it is at least as new as every file under `src/` (CI's `npm ci`
 * builds it), otherwise `node --import tsx src/main.ts`. Compiled, a start costs about a third of the
 * CPU (6.6 s against 18.8 s at load ~15, README "Production start"): three instances started at once
 * through tsx on the loaded 2-core machine took longer than the 60 s start timeout. The port is read from
 * the service's own start-up log line.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { readdirSync, statSync } from "node:fs"
import * as path from "node:path"
import { Data, Deferred, Duration, Effect, Scope } from "effect"

export class ServiceStartError extends Data.TaggedError("ServiceStartError")<{ readonly message: string }> {}

export interface ServiceProcess {
  readonly url: string
  readonly pid: number
  /** Everything the process printed so far. */
  readonly output: () => string
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Effect.Effect<number | string>
}

const root = path.resolve(import.meta.dirname, "../..")

const newestUnder = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((newest, entry) => {
    const full = path.join(dir, entry.name)
    return Math.max(newest, entry.isDirectory() ? newestUnder(full) : statSync(full).mtimeMs)
  }, 0)

/** The arguments `node` starts the service with (decided once per test file). */
const entry: ReadonlyArray<string> = (() => {
  try {
    const built = statSync(path.join(root, "dist/src/main.js")).mtimeMs
    if (built >= newestUnder(path.join(root, "src"))) return ["--enable-source-maps", "dist/src/main.js"]
  } catch {
    // No build: run the sources.
  }
  return ["--import", "tsx", "src/main.ts"]
})()

/** The four upstreams at one sandbox, with account 101's credentials: what a spawned service needs to call it. */
export const sandboxEnv = (sandboxUrl: string): Record<string, string> => ({
  FORUM_API_URL: sandboxUrl,
  LLM_BASE_URL: sandboxUrl,
  MARKET_API_URL: sandboxUrl,
  NEWS_API_URL: sandboxUrl,
  KOL_101_EMAIL: "kol101@example.com",
  KOL_101_PASSWORD: "pw-101"
})

export const start = (env: Readonly<Record<string, string>>): Effect.Effect<ServiceProcess, ServiceStartError, Scope.Scope> =>
  Effect.gen(function* () {
    const exit = yield* Deferred.make<number | string>()
    const listening = yield* Deferred.make<string, ServiceStartError>()
    let output = ""
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [...entry], {
          cwd: root,
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", HOST: "127.0.0.1", PORT: "0", ...env },
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) =>
        child.exitCode === null && child.signalCode === null
          ? Effect.sync(() => child.kill("SIGKILL")).pipe(Effect.zipRight(Deferred.await(exit)), Effect.asVoid)
          : Effect.void
    )
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = /listening on (http:\/\/[^\s]+)/.exec(output)
      if (match?.[1] !== undefined) Deferred.unsafeDone(listening, Effect.succeed(match[1]))
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.on("exit", (code, signal) => {
      Deferred.unsafeDone(exit, Effect.succeed(code ?? signal ?? "unknown"))
      Deferred.unsafeDone(listening, Effect.fail(new ServiceStartError({ message: `service exited before listening:\n${output}` })))
    })
    const url = yield* Deferred.await(listening).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(60),
        onTimeout: () => new ServiceStartError({ message: `service did not start within 60 s (${entry.join(" ")}):\n${output}` })
      })
    )
    return {
      url,
      pid: child.pid ?? -1,
      output: () => output,
      kill: (signal) => Effect.sync(() => void child.kill(signal)),
      exited: Deferred.await(exit)
    }
  })
