/**
 * A throw-away PostgreSQL server for tests, with no manual setup step.
 *
 * `postgres` finds the server binaries (`pg_config --bindir`, the highest /usr/lib/postgresql/<v>/bin,
 * /usr/local/bin, /usr/local/pgsql/bin, then PATH), installing Debian's `postgresql` package with
 * apt-get when none are found and the process runs as root. PostgreSQL refuses to run as root, so as
 * root every server command runs as the `postgres` OS user (created if missing) through `runuser`.
 * The cluster lives in a fresh `mkdtemp` directory, listens on a free loopback port with trust auth,
 * and is stopped (`pg_ctl -m immediate stop`) and deleted when the scope closes, whatever the test did.
 *
 *   it.scopedLive("...", () => Effect.gen(function* () { const { url } = yield* postgres; ... }))
 *   layer(Postgres.layer, { timeout: "120 seconds" })((it) => { ... yield* Postgres ... })
 *   const otherUrl = yield* createDatabase(url, "orders_test")
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Data, Duration, Effect, Layer, Option, Redacted, type Scope } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export class PostgresError extends Data.TaggedError("PostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (superuser `postgres`, trust auth, no password). */
  readonly url: string
  readonly port: number
  /** The cluster's data directory; also holds the Unix socket and the server log (`<dataDir>/log`). */
  readonly dataDir: string
  /** Directory the initdb / pg_ctl / postgres binaries came from. */
  readonly binDir: string
  /** e.g. "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". */
  readonly version: string
  /**
   * An outage: the server stops (`pg_ctl -m fast`: every session ends, committed data is kept — this
   * server runs with `synchronous_commit=off`, so a simulated crash would lose the last commits),
   * stays down for `downFor`, and starts again on the same port with its data.
   */
  readonly outage: (downFor: Duration.DurationInput) => Effect.Effect<void, PostgresError>
}

export interface Binaries {
  readonly binDir: string
  readonly initdb: string
  readonly pgCtl: string
  readonly postgres: string
}

const OS_USER = "postgres"
const INITDB_TIMEOUT = Duration.seconds(60)
const START_TIMEOUT = Duration.seconds(30)
const STOP_TIMEOUT = Duration.seconds(30)

const isRoot = (): boolean => process.getuid?.() === 0

// ---------------------------------------------------------------------------------------------------
// Running commands

interface RunOptions {
  readonly timeout: Duration.DurationInput
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

interface Output {
  readonly stdout: string
  readonly stderr: string
}

const describeCommand = (file: string, args: ReadonlyArray<string>): string =>
  [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ")

/** execFile as an Effect: fails with PostgresError (stderr included), kills the child on interruption/timeout. */
const run = (file: string, args: ReadonlyArray<string>, options: RunOptions): Effect.Effect<Output, PostgresError> => {
  const command = describeCommand(file, args)
  return Effect.async<Output, PostgresError>((resume) => {
    const child = execFile(
      file,
      [...args],
      {
        encoding: "utf8",
        maxBuffer: 64 * 1024 * 1024,
        env: options.env ?? process.env,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd })
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resume(Effect.succeed({ stdout, stderr }))
        } else {
          const detail = (stderr.trim() || stdout.trim() || error.message).split("\n").slice(-15).join("\n")
          const code = error.code === undefined ? "" : ` (exit ${String(error.code)})`
          resume(Effect.fail(new PostgresError({ message: `\`${command}\` failed${code}:\n${detail}`, cause: error })))
        }
      }
    )
    child.stdin?.end()
    return Effect.sync(() => {
      // SIGTERM rather than SIGKILL so runuser forwards it to the real command.
      if (child.exitCode === null) child.kill("SIGTERM")
    })
  }).pipe(
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () =>
        new PostgresError({ message: `\`${command}\` did not finish within ${Duration.format(options.timeout)}` })
    })
  )
}

/** Environment for server commands: no PG* variables leaking in from the developer's shell. */
const serverEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")))

/** Runs a server binary as the `postgres` OS user when we are root, else as ourselves. */
const runAsServerUser = (file: string, args: ReadonlyArray<string>, options: RunOptions) =>
  isRoot()
    ? run("runuser", ["-u", OS_USER, "--", file, ...args], { env: serverEnv(), ...options })
    : run(file, args, { env: serverEnv(), ...options })

// ---------------------------------------------------------------------------------------------------
// Finding (or installing) the binaries

const isExecutable = (file: string) =>
  Effect.promise(() =>
    fs.access(file, fs.constants.X_OK).then(
      () => true,
      () => false
    )
  )

const serverBinariesIn = (binDir: string): Effect.Effect<Option.Option<Binaries>> => {
  const bins: Binaries = {
    binDir,
    initdb: path.join(binDir, "initdb"),
    pgCtl: path.join(binDir, "pg_ctl"),
    postgres: path.join(binDir, "postgres")
  }
  return Effect.forEach([bins.initdb, bins.pgCtl, bins.postgres], isExecutable).pipe(
    Effect.map((ok) => (ok.every(Boolean) ? Option.some(bins) : Option.none()))
  )
}

const versionKey = (dir: string): ReadonlyArray<number> => dir.split(".").map((p) => Number.parseInt(p, 10) || 0)

const compareVersionsDesc = (a: string, b: string): number => {
  const [ka, kb] = [versionKey(a), versionKey(b)]
  for (let i = 0; i < Math.max(ka.length, kb.length); i++) {
    const d = (kb[i] ?? 0) - (ka[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/** Candidate bin directories, most preferred first, without duplicates. */
const candidateDirs: Effect.Effect<ReadonlyArray<string>> = Effect.gen(function* () {
  const fromPgConfig = yield* run("pg_config", ["--bindir"], { timeout: "5 seconds" }).pipe(
    Effect.map((o) => [o.stdout.trim()].filter((d) => d.length > 0)),
    Effect.orElseSucceed((): ReadonlyArray<string> => [])
  )
  const debian = yield* Effect.promise(() =>
    fs.readdir("/usr/lib/postgresql").then(
      (entries) => [...entries].sort(compareVersionsDesc).map((v) => path.join("/usr/lib/postgresql", v, "bin")),
      (): ReadonlyArray<string> => []
    )
  )
  const onPath = (process.env["PATH"] ?? "").split(path.delimiter).filter((d) => d.length > 0)
  return [...new Set([...fromPgConfig, ...debian, "/usr/local/bin", "/usr/local/pgsql/bin", ...onPath])]
})

const searchBinaries: Effect.Effect<Option.Option<Binaries>> = Effect.gen(function* () {
  for (const dir of yield* candidateDirs) {
    const found = yield* serverBinariesIn(dir)
    if (Option.isSome(found)) return found
  }
  return Option.none<Binaries>()
})

/** `apt-get install postgresql` (root only). Exported so the install path can be exercised on its own. */
export const installDebianPackage: Effect.Effect<void, PostgresError> = Effect.gen(function* () {
  if (!isRoot()) {
    return yield* new PostgresError({
      message:
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found and this process is not root, " +
        "so they cannot be installed automatically. Install them, e.g. " +
        "`sudo apt-get install -y --no-install-recommends postgresql` on Debian/Ubuntu, " +
        "or make `pg_config --bindir` / PATH point at a PostgreSQL server installation."
    })
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  // Parallel test workers may race for the dpkg lock: wait for it instead of failing.
  const lock = ["-o", "DPkg::Lock::Timeout=600"]
  yield* Effect.logInfo("postgres test support: no PostgreSQL server binaries found; running `apt-get update`")
  yield* run("apt-get", [...lock, "update"], { timeout: "10 minutes", env })
  yield* Effect.logInfo(
    "postgres test support: running `apt-get install -y --no-install-recommends postgresql` (DEBIAN_FRONTEND=noninteractive)"
  )
  yield* run("apt-get", [...lock, "install", "-y", "--no-install-recommends", "postgresql"], {
    timeout: "15 minutes",
    env
  })
  yield* Effect.logInfo("postgres test support: package 'postgresql' installed")
})

/** Finds initdb/pg_ctl/postgres, installing Debian's `postgresql` package (as root) when absent. */
export const findBinaries: Effect.Effect<Binaries, PostgresError> = Effect.gen(function* () {
  const found = yield* searchBinaries
  if (Option.isSome(found)) return found.value
  yield* installDebianPackage
  const afterInstall = yield* searchBinaries
  if (Option.isSome(afterInstall)) return afterInstall.value
  return yield* new PostgresError({
    message:
      "Installed Debian package 'postgresql' but still found no initdb/pg_ctl/postgres in " +
      `${(yield* candidateDirs).join(", ")}`
  })
})

// ---------------------------------------------------------------------------------------------------
// OS user, data directory, port

interface Ids {
  readonly uid: number
  readonly gid: number
}

const lookupIds = (user: string): Effect.Effect<Ids, PostgresError> =>
  Effect.all({
    uid: run("id", ["-u", user], { timeout: "5 seconds" }),
    gid: run("id", ["-g", user], { timeout: "5 seconds" })
  }).pipe(Effect.map(({ gid, uid }) => ({ uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) })))

/** Ensures the `postgres` OS user exists (Debian's package creates it; otherwise useradd). */
const ensureServerUser: Effect.Effect<Ids, PostgresError> = lookupIds(OS_USER).pipe(
  Effect.orElse(() =>
    Effect.logInfo(`postgres test support: creating system user '${OS_USER}'`).pipe(
      Effect.zipRight(run("useradd", ["--system", "--no-create-home", OS_USER], { timeout: "30 seconds" })),
      // Another worker may have created it meanwhile: what matters is that it exists now.
      Effect.catchAll((e) => lookupIds(OS_USER).pipe(Effect.mapError(() => e))),
      Effect.zipRight(lookupIds(OS_USER))
    )
  )
)

const makeDataDir: Effect.Effect<string, PostgresError> = Effect.tryPromise({
  try: () => fs.mkdtemp(path.join(os.tmpdir(), "pg-test-")),
  catch: (cause) => new PostgresError({ message: `Could not create a temp dir under ${os.tmpdir()}: ${String(cause)}`, cause })
})

const removeDir = (dir: string) =>
  Effect.tryPromise(() => fs.rm(dir, { recursive: true, force: true, maxRetries: 3 })).pipe(
    Effect.catchAll((e) => Effect.logWarning(`postgres test support: could not remove ${dir}`, e))
  )

/** A free loopback port: listen on port 0, note the port, close. */
const freePort: Effect.Effect<number, PostgresError> = Effect.async<number, PostgresError>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (cause) =>
    resume(Effect.fail(new PostgresError({ message: `Could not find a free port: ${cause.message}`, cause })))
  )
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() =>
      resume(port > 0 ? Effect.succeed(port) : Effect.fail(new PostgresError({ message: "Could not find a free port" })))
    )
  })
})

const readLogTail = (file: string): Effect.Effect<string> =>
  Effect.promise(() =>
    fs.readFile(file, "utf8").then(
      (text) => text.trim().split("\n").slice(-20).join("\n"),
      () => "(no server log)"
    )
  )

// ---------------------------------------------------------------------------------------------------
// The server

const stopServer = (bins: Binaries, dataDir: string, mode: "immediate" | "fast" = "immediate") =>
  Effect.gen(function* () {
    const pidFile = path.join(dataDir, "postmaster.pid")
    const pidText = yield* Effect.promise(() => fs.readFile(pidFile, "utf8").catch(() => undefined))
    if (pidText === undefined) return // never started (or already gone)
    const stopped = yield* runAsServerUser(bins.pgCtl, ["-D", dataDir, "-m", mode, "-w", "stop"], {
      timeout: STOP_TIMEOUT,
      cwd: dataDir
    }).pipe(
      Effect.as(true),
      Effect.catchAll((e) => Effect.logWarning(`postgres test support: pg_ctl stop failed: ${e.message}`).pipe(Effect.as(false)))
    )
    if (stopped) return
    const pid = Number.parseInt(pidText.split("\n")[0] ?? "", 10)
    if (Number.isInteger(pid) && pid > 0) {
      yield* Effect.logWarning(`postgres test support: killing postmaster ${pid} with SIGKILL`)
      yield* Effect.try(() => process.kill(pid, "SIGKILL")).pipe(Effect.ignore)
    }
  })

const startServer = (bins: Binaries, dataDir: string, fixedPort?: number): Effect.Effect<number, PostgresError> =>
  Effect.gen(function* () {
    const port = fixedPort ?? (yield* freePort)
    const logFile = path.join(dataDir, "log")
    const quotedDir = `'${dataDir.replace(/'/g, `'\\''`)}'` // -o is parsed by a shell inside pg_ctl
    const serverOptions = [
      `-p ${port}`,
      `-k ${quotedDir}`,
      "-c listen_addresses=127.0.0.1",
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
      "-c max_connections=200"
    ].join(" ")
    yield* runAsServerUser(
      bins.pgCtl,
      ["-D", dataDir, "-l", logFile, "-w", "-t", String(Duration.toSeconds(START_TIMEOUT)), "-o", serverOptions, "start"],
      { timeout: Duration.sum(START_TIMEOUT, Duration.seconds(5)), cwd: dataDir }
    ).pipe(
      Effect.catchAll((e) =>
        readLogTail(logFile).pipe(
          Effect.flatMap((log) =>
            Effect.fail(
              new PostgresError({ message: `Could not start PostgreSQL on port ${port}: ${e.message}\n--- server log ---\n${log}`, cause: e })
            )
          )
        )
      )
    )
    return port
  }).pipe(
    // The port was free a moment ago but someone else may have taken it: try another.
    Effect.retry({ times: fixedPort === undefined ? 2 : 0, while: (e) => e.message.includes("already in use") })
  )

/**
 * A running, empty PostgreSQL server for the lifetime of the scope. Bring-up: initdb (< 60 s) +
 * start (< 30 s); release: `pg_ctl -m immediate stop`, then the data directory is deleted.
 */
export const postgres: Effect.Effect<PostgresServer, PostgresError, Scope.Scope> = Effect.gen(function* () {
  const bins = yield* findBinaries
  const version = yield* run(bins.postgres, ["--version"], { timeout: "10 seconds" }).pipe(
    Effect.map((o) => o.stdout.trim())
  )
  const ids = isRoot() ? Option.some(yield* ensureServerUser) : Option.none<Ids>()

  // Registered first, so it runs last: after the server has been stopped.
  const dataDir = yield* Effect.acquireRelease(makeDataDir, removeDir)
  if (Option.isSome(ids)) {
    yield* Effect.tryPromise({
      try: () => fs.chown(dataDir, ids.value.uid, ids.value.gid),
      catch: (cause) => new PostgresError({ message: `Could not chown ${dataDir} to ${OS_USER}: ${String(cause)}`, cause })
    })
    yield* runAsServerUser("test", ["-w", dataDir], { timeout: "10 seconds" }).pipe(
      Effect.mapError(
        (cause) =>
          new PostgresError({
            message:
              `The '${OS_USER}' OS user cannot write ${dataDir}; a parent directory of os.tmpdir() ` +
              `(${os.tmpdir()}) is probably not accessible to it. Run with TMPDIR=/tmp.`,
            cause
          })
      )
    )
  }

  yield* runAsServerUser(
    bins.initdb,
    ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
    { timeout: INITDB_TIMEOUT, cwd: dataDir }
  ).pipe(Effect.mapError((e) => new PostgresError({ message: `initdb failed: ${e.message}`, cause: e })))

  // Registered before starting, so a start that half-succeeded (or timed out) is still stopped.
  yield* Effect.addFinalizer(() => stopServer(bins, dataDir))
  const port = yield* startServer(bins, dataDir)

  const outage = (downFor: Duration.DurationInput) =>
    stopServer(bins, dataDir, "fast").pipe(
      Effect.zipRight(Effect.sleep(downFor)),
      Effect.zipRight(startServer(bins, dataDir, port)),
      Effect.asVoid
    )
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dataDir, binDir: bins.binDir, version, outage }
})

/** The server as a service, for `layer(Postgres.layer)` from @effect/vitest or Effect.provide. */
export class Postgres extends Context.Tag("test/support/Postgres")<Postgres, PostgresServer>() {
  static readonly layer: Layer.Layer<Postgres, PostgresError> = Layer.scoped(Postgres, postgres)
}

export const layer = Postgres.layer

/** Replaces the database in a postgres:// url. */
export const withDatabase = (url: string, database: string): string => {
  const u = new URL(url)
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}

/**
 * Creates database `name` on the server behind `url` (any database of it) and returns the url of the
 * new database. Names are limited to [A-Za-z_][A-Za-z0-9_]* (max 63 chars) and are used verbatim (quoted).
 */
export const createDatabase = (url: string, name: string): Effect.Effect<string, PostgresError> =>
  Effect.gen(function* () {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
      return yield* new PostgresError({ message: `Invalid database name ${JSON.stringify(name)}: use [A-Za-z_][A-Za-z0-9_]{0,62}` })
    }
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`CREATE DATABASE "${name}"`)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })),
      Effect.timeoutFail({
        duration: "30 seconds",
        onTimeout: () => new PostgresError({ message: `CREATE DATABASE "${name}" did not finish within 30 seconds` })
      }),
      Effect.mapError((e) =>
        e instanceof PostgresError ? e : new PostgresError({ message: `Could not create database "${name}": ${e.message}`, cause: e })
      )
    )
    return withDatabase(url, name)
  })
