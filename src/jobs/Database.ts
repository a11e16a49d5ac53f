/**
 * Where the service keeps its state: an embedded SQLite file under `DATA_DIR` by default, the file
 * named by `DATABASE_URL` (`sqlite:<path>` or `file:<path>`), or PostgreSQL (`postgres://…`), which
 * several instances can share. A SQLite file is locked for the life of the process, because two
 * processes on one SQLite file would both resume and run the same jobs.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { SqlClient } from "@effect/sql"
import { Config, Context, Data, Effect, Layer, Option, Redacted } from "effect"
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

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * An exclusive lock file next to the database, held until the scope closes. A lock left by a process
 * that died (SIGKILL) is taken over; a live holder is an error, not a silent second writer.
 */
export const lockFile = (filename: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        fs.mkdirSync(path.dirname(filename), { recursive: true })
        const lock = `${filename}.lock`
        for (let tries = 0; tries < 2; tries++) {
          try {
            fs.writeFileSync(lock, String(process.pid), { flag: "wx" })
            return lock
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
            const holder = Number(fs.readFileSync(lock, "utf8").trim())
            if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder)) {
              throw new Error(`${filename} is in use by process ${holder}`)
            }
            fs.rmSync(lock, { force: true })
          }
        }
        throw new Error(`could not lock ${filename}`)
      },
      catch: (error) => new DataDirLocked({ message: error instanceof Error ? error.message : String(error) })
    }),
    (lock) => Effect.sync(() => fs.rmSync(lock, { force: true }))
  )

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
