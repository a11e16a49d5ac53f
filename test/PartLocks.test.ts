/**
 * The fence around a job part on PostgreSQL: two "processes" (each its own pool and lock
 * connection) never hold one part together; a holder that lets go, or whose session dies, hands
 * the part over; a broken lock connection is replaced.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Redacted, Scope } from "effect"
import * as PartLocks from "../src/jobs/PartLocks.js"
import { createDatabase, postgres } from "./support/postgres.js"

/** A process's view: its own pool on `url`, and its PartLocks. */
const process_ = (url: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      PgClient.layer({ url: Redacted.make(url), maxConnections: 3, applicationName: "partlocks-test" })
    )
    return yield* PartLocks.make.pipe(Effect.provide(context))
  })

const never = Effect.succeed(false)

describe("PartLocks on PostgreSQL", () => {
  it.live(
      "one holder per part across processes; letting go or dying hands it over; a broken connection is replaced",
      () =>
        Effect.gen(function* () {
          const server = yield* postgres
          const url = yield* createDatabase(server.url, "part_locks")
          const a = yield* process_(url)
          const b = yield* process_(url)

          // A holds part 0 of job j; another part and another job are free for B.
          const aScope = yield* Scope.make()
          expect(yield* Scope.extend(a.hold("j", 0, never), aScope)).toBe(true)
          expect(yield* Effect.scoped(b.hold("j", 1, never))).toBe(true)
          expect(yield* Effect.scoped(b.hold("k", 0, never))).toBe(true)

          // B waits for j#0; its stop signal ends the wait with false.
          const stop = yield* Deferred.make<void>()
          const gaveUp = yield* Effect.fork(Effect.scoped(b.hold("j", 0, Deferred.isDone(stop))))
          yield* Effect.sleep("200 millis")
          yield* Deferred.succeed(stop, undefined)
          expect(yield* Fiber.join(gaveUp)).toBe(false)

          // Two runs of one part in the same process also take turns.
          const sameProcess = yield* Effect.fork(Effect.scoped(a.hold("j", 0, never)))
          yield* Effect.sleep("200 millis")
          expect(sameProcess.unsafePoll()).toBeNull()
          yield* Fiber.interrupt(sameProcess)

          // A lets go: B gets it.
          const waiting = yield* Effect.fork(
            Effect.gen(function* () {
              const scope = yield* Scope.make()
              const got = yield* Scope.extend(b.hold("j", 0, never), scope)
              return { got, scope }
            })
          )
          yield* Effect.sleep("200 millis")
          expect(waiting.unsafePoll()).toBeNull()
          yield* Scope.close(aScope, Exit.void)
          const bHolds = yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))
          expect(bHolds.got).toBe(true)

          // B's session dies (as when its process is killed): the database drops its locks, A gets
          // the part at once, and B's next statement runs on a fresh connection.
          const sql = Context.get(yield* Layer.build(PgClient.layer({ url: Redacted.make(url) })), SqlClient.SqlClient)
          const killed = yield* sql<{ n: number }>`
            SELECT count(pg_terminate_backend(l.pid))::int AS n FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()`
          expect(killed[0]?.n).toBeGreaterThan(0)
          expect(yield* Effect.scoped(a.hold("j", 0, never)).pipe(Effect.timeout("5 seconds"))).toBe(true)
          // The first statement on the dead connection fails and drops it; the next one reconnects.
          const retried = yield* Effect.scoped(b.hold("m", 0, never)).pipe(
            Effect.retry({ times: 1 }),
            Effect.timeout("5 seconds")
          )
          expect(retried).toBe(true)
          yield* Scope.close(bHolds.scope, Exit.void)
        }).pipe(Effect.scoped),
      120_000
    )
})
