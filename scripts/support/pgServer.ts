/**
 * The benches' hold on the PostgreSQL server `test/support/postgres.ts` brings up: a client of
 * their own, pg_stat_statements switched on, and the postmaster's pid for its CPU from /proc.
 * Shared by `bench-cluster.ts` and `idle-cost.ts`, which both read the server's statements and CPU.
 */
import { readFileSync } from "node:fs"
import path from "node:path"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Redacted } from "effect"
import type { PostgresServer } from "../../test/support/postgres.js"

/** A client of `url` until the scope closes (one connection: the bench's own statements). */
export const pgAt = (url: string) =>
  Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })).pipe(
    Effect.map((context) => Context.get(context, SqlClient.SqlClient)),
    Effect.orDie
  )

/** pg_stat_statements is loaded at start-up only: set it and restart the server (same port, same data). */
export const enableStatementStats = (server: PostgresServer) =>
  Effect.gen(function* () {
    yield* Effect.scoped(
      Effect.flatMap(pgAt(server.url), (admin) => Effect.orDie(admin`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`))
    )
    yield* server.outage("0 millis").pipe(Effect.orDie)
  })

/** The postmaster's pid now (it changes when the server restarts), or undefined while it is down. */
export const postmasterPid = (server: PostgresServer) => (): number | undefined => {
  try {
    return Number(readFileSync(path.join(server.dataDir, "postmaster.pid"), "utf8").split("\n")[0])
  } catch {
    return undefined
  }
}
