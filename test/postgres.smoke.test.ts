/**
 * Smoke test for test/support/postgres.ts: a real PostgreSQL server is brought up (installed first if
 * need be), queried through @effect/sql-pg, given a second database, and torn down.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import { createDatabase, Postgres, postgres } from "./support/postgres.js"

const TIMEOUT = 120_000

/** Runs `self` with an @effect/sql client connected to `url`. */
const withClient = <A, E>(url: string, self: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.provide(self, PgClient.layer({ url: Redacted.make(url), maxConnections: 2 }))

const canConnect = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

describe("postgres test support", () => {
  layer(Postgres.layer, { timeout: "120 seconds" })("shared server", (it) => {
    it.effect(
      "answers SELECT 1",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`)
          const rows = yield* withClient(
            server.url,
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ one: number }>`SELECT 1 AS one`)
          )
          expect(rows).toEqual([{ one: 1 }])
        }),
      TIMEOUT
    )

    it.effect(
      "creates a second database and connects to it",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const url = yield* createDatabase(server.url, "smoke_second")
          expect(url).toBe(`postgres://postgres@127.0.0.1:${server.port}/smoke_second`)
          const [row] = yield* withClient(
            url,
            Effect.flatMap(SqlClient.SqlClient, (sql) =>
              Effect.zipRight(
                sql`CREATE TABLE t (id int primary key)`.pipe(Effect.zipRight(sql`INSERT INTO t VALUES (7)`)),
                sql<{ db: string; n: number }>`SELECT current_database() AS db, (SELECT count(*)::int FROM t) AS n`
              )
            )
          )
          expect(row).toEqual({ db: "smoke_second", n: 1 })

          const again = yield* Effect.flip(createDatabase(server.url, "smoke_second"))
          expect(again._tag).toBe("PostgresError")
          const bad = yield* Effect.flip(createDatabase(server.url, `x"; DROP DATABASE postgres; --`))
          expect(bad.message).toContain("Invalid database name")
        }),
      TIMEOUT
    )
  })

  it.live(
    "stops the server and removes its data directory when the scope closes, even on failure",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const server = yield* Scope.extend(postgres, scope)
        expect(fs.existsSync(server.dataDir)).toBe(true)
        expect(yield* canConnect(server.port)).toBe(true)
        yield* Scope.close(scope, Exit.fail("the test failed"))
        expect(fs.existsSync(server.dataDir)).toBe(false)
        expect(yield* canConnect(server.port)).toBe(false)
      }),
    TIMEOUT
  )
})
