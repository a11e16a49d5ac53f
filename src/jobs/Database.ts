/**
 * Where the service keeps its state: an embedded SQLite file under `DATA_DIR` by default, the file
 * named by `DATABASE_URL` (`sqlite:<path>` or `file:<path>`), or PostgreSQL (`postgres://…`), which
 * several instances can share. A SQLite file is locked for the life of the process (an OS file lock,
 * which dies with the process), because two processes on one SQLite file would both resume and run
 * the same jobs.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, type SqlError } from "@effect/sql"
import { Config, Context, Data, Effect, Either, Layer, Option, Redacted, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

export class DatabaseConfigError extends Data.TaggedError("DatabaseConfigError")<{ readonly message: string }> {}

export type DatabaseLocation =
  | {
      readonly dialect: "sqlite"
      /** Absolute path of the SQLite file. */
      readonly filename: string
    }
  | {
      readonly dialect: "pg"
      readonly url: Redacted.Redacted
      /** host:port/database, for logs (no credentials). */
      readonly display: string
    }

/** Where the data is, fit for a log line (never the password). */
export const describe = (where: DatabaseLocation): string =>
  where.dialect === "sqlite" ? where.filename : `postgres://${where.display}`

export const DEFAULT_FILE = "parallel-processor.db"

/** Reads `DATABASE_URL` / `DATA_DIR`. The URL is redacted: it may carry a password. */
export const location: Effect.Effect<DatabaseLocation, DatabaseConfigError> = Effect.gen(function* () {
  const url = yield* Config.option(Config.redacted("DATABASE_URL")).pipe(
    Effect.mapError(() => new DatabaseConfigError({ message: "DATABASE_URL could not be read" }))
  )
  const dataDir = yield* Config.string("DATA_DIR").pipe(
    Config.withDefault("./data"),
    Effect.mapError(() => new DatabaseConfigError({ message: "DATA_DIR could not be read" }))
  )
  if (Option.isNone(url) || Redacted.value(url.value).trim() === "") {
    return { dialect: "sqlite" as const, filename: path.resolve(dataDir, DEFAULT_FILE) }
  }
  const raw = Redacted.value(url.value).trim()
  const match = /^(sqlite|file):(\/\/)?(.+)$/.exec(raw)
  if (match?.[3] !== undefined) return { dialect: "sqlite" as const, filename: path.resolve(match[3]) }
  if (/^postgres(ql)?:\/\//i.test(raw)) {
    const parsed = Option.liftThrowable(() => new URL(raw))()
    if (Option.isNone(parsed)) return yield* new DatabaseConfigError({ message: "DATABASE_URL is not a valid postgres:// URL" })
    return {
      dialect: "pg" as const,
      url: url.value,
      display: `${parsed.value.hostname}:${parsed.value.port || "5432"}${parsed.value.pathname}`
    }
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1]
  return yield* new DatabaseConfigError({
    message: `DATABASE_URL: unsupported scheme ${scheme === undefined ? "(none)" : `"${scheme}"`}; use postgres://… or sqlite:<path>`
  })
})

export class DataDirLocked extends Data.TaggedError("DataDirLocked")<{ readonly message: string }> {}

const SQLITE_HEADER = "SQLite format 3\0"

/**
 * Earlier versions wrote their pid into `<db>.lock`; such a file is not a SQLite database, and the
 * lock below could not be taken on it. It means nothing now (a pid can belong to any process), so
 * it is emptied: an empty file is a valid, empty SQLite database.
 */
const clearLegacyLock = (lock: string) =>
  Effect.try({
    try: () => {
      fs.mkdirSync(path.dirname(lock), { recursive: true })
      if (!fs.existsSync(lock) || fs.statSync(lock).size === 0) return
      const head = Buffer.alloc(SQLITE_HEADER.length)
      const fd = fs.openSync(lock, "r")
      try {
        fs.readSync(fd, head, 0, head.length, 0)
      } finally {
        fs.closeSync(fd)
      }
      if (head.toString("latin1") !== SQLITE_HEADER) fs.truncateSync(lock, 0)
    },
    catch: (error) => new DataDirLocked({ message: `cannot prepare the lock file ${lock}: ${error instanceof Error ? error.message : String(error)}` })
  })

/** Which process holds a POSIX lock on `file`, from Linux's `/proc/locks`; `undefined` when unknown. */
const lockHolder = (file: string): Effect.Effect<number | undefined> =>
  Effect.try(() => {
    const inode = fs.statSync(file).ino
    // "1: POSIX  ADVISORY  WRITE 20744 fe:00:2146795 1073741824 1073742335"
    for (const line of fs.readFileSync("/proc/locks", "utf8").split("\n")) {
      const fields = line.trim().split(/\s+/)
      if (fields[1] === "POSIX" && fields[5]?.split(":")[2] === String(inode)) return Number(fields[4])
    }
    return undefined
  }).pipe(Effect.orElseSucceed(() => undefined))

const codeOf = (error: SqlError.SqlError): unknown =>
  typeof error.cause === "object" && error.cause !== null && "code" in error.cause ? error.cause.code : undefined

/**
 * An OS lock on `<db>.lock`, held until the scope closes: an exclusive SQLite lock (a POSIX `fcntl`
 * lock, taken by `BEGIN EXCLUSIVE` on a connection of its own that never commits) on an empty
 * SQLite file next to the database. The OS drops it when the process ends however it ends (SIGKILL
 * too), so nothing is ever left to take over, and no pid is read (a pid file named an unrelated live
 * process after a reboot, and the service refused to start). A second process on the same file is
 * refused at once. The file itself stays: removing it could let two processes lock two different
 * files of one name.
 */
export const lockFile = (filename: string): Effect.Effect<string, DataDirLocked, Scope.Scope> =>
  Effect.gen(function* () {
    const lock = `${filename}.lock`
    yield* clearLegacyLock(lock)
    const refused = (error: unknown) =>
      new DataDirLocked({ message: `cannot lock ${lock}: ${error instanceof Error ? error.message : String(error)}` })
    // Opening a file that cannot be opened throws inside the client's constructor: a defect there.
    const client = yield* SqliteClient.make({ filename: lock, disableWAL: true }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((defect) => Effect.fail(refused(defect)))
    )
    // No wait for a holder (better-sqlite3 waits 5 s by default), and no journal file: nothing is
    // ever written, so the lock needs no disk space (a restart on a full disk still takes it).
    const taken = yield* client.unsafe("PRAGMA busy_timeout = 0").pipe(
      Effect.zipRight(client.unsafe("PRAGMA journal_mode = MEMORY")),
      Effect.zipRight(client.unsafe("BEGIN EXCLUSIVE")),
      Effect.either
    )
    if (Either.isLeft(taken)) {
      if (codeOf(taken.left) !== "SQLITE_BUSY") return yield* refused(taken.left.cause)
      const holder = yield* lockHolder(lock)
      return yield* new DataDirLocked({
        message: `${filename} is in use by ${holder === undefined ? "another process" : `process ${holder}`} (it holds the lock on ${lock}): two processes on one SQLite file would both run the same jobs`
      })
    }
    return lock
  })

const tune = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  // WAL + NORMAL: a commit survives the process being killed (only an OS crash can lose the last
  // few), and costs microseconds instead of an fsync per item result.
  Effect.zipRight(sql`PRAGMA synchronous = NORMAL`, sql`PRAGMA busy_timeout = 5000`)
)

/** SqlClient for the configured location; a SQLite file is locked and tuned for many small commits. */
export const layer = (
  where: DatabaseLocation
): Layer.Layer<SqlClient.SqlClient, DataDirLocked | DatabaseConfigError> =>
  where.dialect === "pg"
    ? PgClient.layer({ url: where.url, applicationName: "parallel-processor", maxConnections: 20 }).pipe(
        Layer.mapError(() => new DatabaseConfigError({ message: `cannot connect to ${describe(where)}` }))
      )
    : Layer.unwrapScoped(
        Effect.map(lockFile(where.filename), () =>
          SqliteClient.layer({ filename: where.filename }).pipe(
            Layer.tap((context) => Effect.orDie(Effect.provide(tune, context))),
            Layer.mapError((error) => new DatabaseConfigError({ message: error.message }))
          )
        )
      )

/** The location as a service, for the start-up log and the cluster mode choice. */
export class Location extends Context.Tag("parallel-processor/DatabaseLocation")<Location, DatabaseLocation>() {}

/** `layer` at the location the environment names, plus that location. */
export const layerFromConfig: Layer.Layer<SqlClient.SqlClient | Location, DataDirLocked | DatabaseConfigError> =
  Layer.unwrapEffect(Effect.map(location, (where) => Layer.merge(layer(where), Layer.succeed(Location, where))))
