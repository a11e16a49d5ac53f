/**
 * Who may run a part of a job right now. With a shared database, the cluster moves a part to another
 * runner when an instance joins or stops, and it does not wait for the old runner to finish the calls
 * it has in flight. Each part is therefore fenced by a PostgreSQL advisory lock held on one reserved
 * connection per process: the runner taking a part over waits until the previous one has stored what
 * was in flight and let go. If a process dies, PostgreSQL ends its session and its locks with it, so
 * a failover waits for nothing. With the embedded SQLite file there is one process: nothing to fence
 * (`none`).
 */
import { SqlClient, type SqlConnection } from "@effect/sql"
import { Duration, Effect, Exit, Option, Schema, Scope } from "effect"
import { StoreError } from "./JobStore.js"

export interface PartLocks {
  /**
   * Waits (interruptibly, even inside an uninterruptible activity) until this process holds the part, and holds it until the scope closes.
   * `stop` is polled while waiting: when it turns true the wait gives up with `false`.
   */
  readonly hold: (
    jobId: string,
    part: number,
    stop: Effect.Effect<boolean>
  ) => Effect.Effect<boolean, StoreError, Scope.Scope>
}

const lockResult = Schema.decodeUnknownOption(Schema.Struct({ ok: Schema.Boolean }))

/** One process on the embedded file: nothing to fence. */
export const none: PartLocks = { hold: () => Effect.succeed(true) }

/** Advisory locks on the shared PostgreSQL database (a cluster, see `Topology`). */
export const make: Effect.Effect<PartLocks, never, SqlClient.SqlClient | Scope.Scope> = Effect.gen(
  function* () {
    const sql = yield* SqlClient.SqlClient
    // Session locks live as long as the connection: one connection kept while it works. If it
    // breaks (the database restarted), its locks are gone with it; the next statement takes a new
    // connection, and the parts running here are no longer fenced until they end (at-least-once).
    let current: { readonly connection: SqlConnection.Connection; readonly scope: Scope.CloseableScope } | undefined
    const held = new Set<string>()
    const connection = Effect.suspend(() => {
      if (current !== undefined) return Effect.succeed(current.connection)
      return Effect.gen(function* () {
        const scope = yield* Scope.make()
        const reserved = yield* Scope.extend(sql.reserve, scope).pipe(
          Effect.tapError(() => Scope.close(scope, Exit.void))
        )
        current = { connection: reserved, scope }
        return reserved
      })
    })
    const dropConnection = Effect.suspend(() => {
      const broken = current
      current = undefined
      held.clear()
      return broken === undefined ? Effect.void : Scope.close(broken.scope, Exit.void)
    })
    yield* Effect.addFinalizer(() => dropConnection)
    // One connection runs one statement at a time.
    const mutex = yield* Effect.makeSemaphore(1)
    const query = (statement: string, params: ReadonlyArray<unknown>) =>
      mutex.withPermits(1)(
        Effect.flatMap(connection, (c) => c.execute(statement, params, undefined)).pipe(
          Effect.tapError((error) =>
            Effect.zipRight(Effect.logWarning(`part-lock connection failed, taking a new one: ${error.message}`), dropConnection)
          )
        )
      ).pipe(Effect.mapError((cause) => new StoreError({ message: "database: part lock failed", cause })))
    // Advisory locks are re-entrant within a session; two runs of one part in this process must
    // still take turns, so the process keeps its own set too (`held`).
    const tryLock = (jobId: string, part: number) =>
      Effect.suspend(() => {
        const key = `${jobId}#${part}`
        if (held.has(key)) return Effect.succeed(false)
        return query("SELECT pg_try_advisory_lock(hashtext($1), $2) AS ok", [jobId, part]).pipe(
          Effect.map((rows) => {
            const ok = Option.exists(lockResult(rows[0]), (row) => row.ok)
            if (ok) held.add(key)
            return ok
          }),
          // A granted lock must be recorded, or it would stay held by this session unseen.
          Effect.uninterruptible
        )
      })
    const unlock = (jobId: string, part: number) =>
      query("SELECT pg_advisory_unlock(hashtext($1), $2)", [jobId, part]).pipe(
        Effect.ensuring(Effect.sync(() => held.delete(`${jobId}#${part}`))),
        Effect.catchAll((error) => Effect.logWarning(`could not release the lock of part ${part}: ${error.message}`))
      )
    const poll = Duration.millis(50)

    return {
      hold: (jobId, part, stop) =>
        Effect.uninterruptible(
          Effect.gen(function* () {
            let granted = false
            const wait = Effect.gen(function* () {
              for (let first = true; ; first = false) {
                // Recorded inside tryLock's uninterruptible region: an interruption that arrives while
                // the lock is being taken is acted on as soon as that region ends — before a plain
                // `granted = yield* tryLock(…)` assigns — and the lock granted meanwhile was never
                // released: the part then waited forever, here and on every other instance.
                yield* Effect.uninterruptible(Effect.flatMap(tryLock(jobId, part), (ok) => Effect.sync(() => { granted = ok })))
                if (granted) return true
                if (first) {
                  yield* Effect.logInfo("waiting for the part to be handed over").pipe(
                    Effect.annotateLogs({ job: jobId, part })
                  )
                }
                yield* Effect.sleep(poll)
                if (yield* stop) return false
              }
            })
            const locked = yield* Effect.interruptible(wait).pipe(
              // Interrupted right after the lock was granted: let go of it.
              Effect.onInterrupt(() => (granted ? unlock(jobId, part) : Effect.void))
            )
            if (locked) yield* Effect.addFinalizer(() => unlock(jobId, part))
            return locked
          })
        )
    } satisfies PartLocks
  }
)
