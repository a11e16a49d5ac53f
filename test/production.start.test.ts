/**
 * The production start from a fresh clone: `git clone` of this repository's HEAD (committed work
 * only) into a temp dir, `npm ci --omit=dev` there (no tsx, no vitest: `prepare` must build dist/
 * with production dependencies alone), `npm start` on embedded defaults (SQLite + the sandbox), one
 * batch through it, then SIGTERM to npm as a supervisor would send it, and a clean exit.
 *
 * One shortcut, for time: better-sqlite3's own install script (compiling SQLite from source, ~1.5 min
 * of CPU here since its prebuilt binaries cannot be downloaded) is denied through npm's `allowScripts`
 * in the clone's package.json, and the binary this checkout already built is copied in. The same
 * pinned version and the same Node, so the same file; everything else is what a user runs. On an npm
 * without `allowScripts` the field is ignored and SQLite compiles (slower, still correct).
 */
import { describe, expect, it } from "@effect/vitest"
import { Data, Deferred, Duration, Effect, Schema } from "effect"
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")

const missing = ["git", "npm"].filter((tool) => spawnSync(tool, ["--version"], { stdio: "ignore" }).status !== 0)
const reason = missing.length > 0 ? ` (skipped: ${missing.join(" and ")} not found on PATH)` : ""

class ProcessFailed extends Data.TaggedError("ProcessFailed")<{ readonly message: string }> {}

/**
 * What the child processes see. PATH loses every node_modules/.bin (`npm test` puts this checkout's
 * first, and the clone's `tsc` must not be found there), and no npm_* variable of the outer npm run
 * leaks in (npm reads them as its own config).
 */
const env = (extra: Readonly<Record<string, string>>): Record<string, string> => {
  const keep: Record<string, string> = {}
  for (const name of ["HOME", "TMPDIR", "npm_config_cache"]) {
    const value = process.env[name]
    if (value !== undefined) keep[name] = value
  }
  const pathVar = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((dir) => !dir.split(path.sep).includes("node_modules"))
    .join(path.delimiter)
  return { ...keep, PATH: pathVar, ...extra }
}

/** Runs a command to its end; fails with its output on a non-zero exit. Interrupted: the process group is killed. */
const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  Effect.async<string, ProcessFailed>((resume) => {
    let output = ""
    const child = spawn(command, args, { cwd, env: env({}), stdio: ["ignore", "pipe", "pipe"], detached: true })
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.on("error", (error) => resume(Effect.fail(new ProcessFailed({ message: `${command}: ${error.message}` }))))
    child.on("exit", (code, signal) =>
      resume(
        code === 0
          ? Effect.succeed(output)
          : Effect.fail(new ProcessFailed({ message: `${command} ${args.join(" ")} exited ${code ?? signal}:\n${output}` }))
      )
    )
    return Effect.sync(() => killGroup(child))
  })

const killGroup = (child: ChildProcess) => {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

const timed = <A, E, R>(label: string, self: Effect.Effect<A, E, R>) =>
  Effect.timed(self).pipe(
    Effect.tap(([took]) => Effect.logInfo(`${label}: ${Duration.format(took)}`)),
    Effect.map(([, a]) => a)
  )

const PackageJson = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

const BatchAnswer = Schema.parseJson(
  Schema.Struct({ id: Schema.String, status: Schema.String, total: Schema.Number, succeeded: Schema.Number })
)

const get = (url: string) =>
  Effect.tryPromise({
    try: () => fetch(url).then(async (r) => ({ status: r.status, body: await r.text() })),
    catch: (e) => new ProcessFailed({ message: `GET ${url}: ${String(e)}` })
  })

describe("production start", () => {
  it.live.skipIf(missing.length > 0)(
    `fresh clone, npm ci --omit=dev, npm start, one batch, SIGTERM${reason}`,
    () =>
      Effect.gen(function* () {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-production-"))),
          (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
        )
        const clone = path.join(dir, "repo")
        yield* timed("git clone", run("git", ["clone", "--quiet", root, clone], dir))

        const manifest = path.join(clone, "package.json")
        const pkg = yield* Schema.decodeUnknown(PackageJson)(fs.readFileSync(manifest, "utf8"))
        fs.writeFileSync(manifest, JSON.stringify({ ...pkg, allowScripts: { "better-sqlite3": false } }, null, 2))

        yield* timed(
          "npm ci --omit=dev (with prepare)",
          run("npm", ["ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund"], clone)
        )
        const installed = (pkgName: string) => fs.existsSync(path.join(clone, "node_modules", pkgName, "package.json"))
        expect(["tsx", "vitest", "@effect/vitest"].filter(installed), "dev dependencies in a production install").toEqual([])
        expect(fs.existsSync(path.join(clone, "dist/src/main.js")), "prepare built dist/").toBe(true)
        expect(fs.existsSync(path.join(clone, "dist/src/index.d.ts")), "declarations for `exports`").toBe(true)

        const binary = "node_modules/better-sqlite3/build/Release/better_sqlite3.node"
        if (!fs.existsSync(path.join(clone, binary))) {
          fs.mkdirSync(path.dirname(path.join(clone, binary)), { recursive: true })
          fs.copyFileSync(path.join(root, binary), path.join(clone, binary))
        }

        // npm start, in a process group of its own so that a failing test leaves nothing running.
        const exited = yield* Deferred.make<number | string>()
        const listening = yield* Deferred.make<string, ProcessFailed>()
        let output = ""
        const npm = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn("npm", ["start"], {
              cwd: clone,
              env: env({ HOST: "127.0.0.1", PORT: "0", DATA_DIR: path.join(dir, "data"), SANDBOX_PROFILE: "instant" }),
              stdio: ["ignore", "pipe", "pipe"],
              detached: true
            })
          ),
          (child) => Effect.sync(() => killGroup(child))
        )
        const onData = (chunk: Buffer) => {
          output += chunk.toString("utf8")
          const match = /listening on (http:\/\/[^\s]+)/.exec(output)
          if (match?.[1] !== undefined) Deferred.unsafeDone(listening, Effect.succeed(match[1]))
        }
        npm.stdout.on("data", onData)
        npm.stderr.on("data", onData)
        npm.on("exit", (code, signal) => {
          Deferred.unsafeDone(exited, Effect.succeed(code ?? signal ?? "unknown"))
          Deferred.unsafeDone(listening, Effect.fail(new ProcessFailed({ message: `npm start exited early:\n${output}` })))
        })
        const url = yield* timed(
          "npm start until listening",
          Deferred.await(listening).pipe(
            Effect.timeoutFail({
              duration: Duration.seconds(90),
              onTimeout: () => new ProcessFailed({ message: `not listening within 90 s:\n${output}` })
            })
          )
        )
        expect(output).toContain("> exec node dist/src/main.js")

        expect((yield* get(`${url}/health`)).status).toBe(200)
        // The dashboard: ui/ found from dist/ (the package root), its libraries from node_modules.
        const page = yield* get(`${url}/`)
        expect(page.status).toBe(200)
        expect(page.body).toContain("<html")
        expect((yield* get(`${url}/ui/vendor/preact.js`)).status).toBe(200)
        expect((yield* get(`${url}/ui/vendor/uPlot.js`)).status).toBe(200)

        const answer = yield* Effect.tryPromise({
          try: () =>
            fetch(`${url}/api/intraday/parallel/execute-multiple?maxConcurrent=2`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify([{ triggerKey: "limit_up" }, { triggerKey: "volume_surge", limit: 5 }])
            }).then((r) => r.text()),
          catch: (e) => new ProcessFailed({ message: `batch: ${String(e)}` })
        }).pipe(Effect.flatMap(Schema.decodeUnknown(BatchAnswer)))
        expect(answer).toMatchObject({ status: "completed", total: 2 })

        // npm forwards SIGTERM to its script; `exec` makes that script the service itself.
        yield* Effect.sync(() => npm.kill("SIGTERM"))
        const code = yield* Deferred.await(exited).pipe(Effect.timeout(Duration.seconds(30)))
        expect(code, output).toBe(0)
        expect(output).toContain("shutting down")
      }).pipe(Effect.scoped),
    300_000
  )
})
