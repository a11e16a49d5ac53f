/**
 * What the store modules share: the one error a statement can end in, and the column schemas their
 * row schemas are built from. The two dialects hand the same column back differently (PostgreSQL's
 * BIGINT and COUNT(*) arrive as decimal strings, SQLite's as numbers; an absent value is NULL), so a
 * row is decoded by a schema that accepts both rather than by casts.
 */
import { SqlError } from "@effect/sql"
import { MigrationError } from "@effect/sql/Migrator"
import { Data, Effect, Option, type ParseResult, Schema } from "effect"

export class StoreError extends Data.TaggedError("StoreError")<{ readonly message: string; readonly cause: unknown }> {}

/**
 * Every way a statement can fail becomes a `StoreError`, including a failed COMMIT or ROLLBACK, which
 * `@effect/sql` turns into a defect (`Effect.orDie` in its `withTransaction`). That is exactly where a
 * full disk fails SQLite (it appends the transaction to the WAL at COMMIT, and then rolls it back by
 * itself, so the ROLLBACK after a failed statement fails too): as a defect it escaped every retry and
 * `StoreError` handler — the result writer died silently and submissions answered 500. A row that
 * does not decode (a `ParseError`) and a migration that fails (a defect of the `Migrator`) are
 * `StoreError`s too.
 */
export const orStoreError = (what: string) => <A, R>(
  effect: Effect.Effect<A, SqlError.SqlError | ParseResult.ParseError | MigrationError | StoreError, R>
): Effect.Effect<A, StoreError, R> =>
  effect.pipe(
    Effect.catchSomeDefect((defect) =>
      defect instanceof SqlError.SqlError || defect instanceof MigrationError ? Option.some(Effect.fail(defect)) : Option.none()
    ),
    Effect.mapError((cause) =>
      cause._tag === "StoreError" ? cause : new StoreError({ message: `database: ${what} failed`, cause })
    )
  )

/**
 * A setup statement (an index, a function) run on first use and, once it succeeded, never again in
 * this process. A failure is not remembered (unlike `Effect.cached`): the database may have been away
 * for a moment, and the next caller tries again. Two callers at once may both run it, so the statement
 * must be idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE` under a lock).
 */
export const onceSucceeded = <E, R>(setup: Effect.Effect<unknown, E, R>): Effect.Effect<void, E, R> => {
  let done = false
  const run = setup.pipe(Effect.zipRight(Effect.sync(() => void (done = true))))
  return Effect.suspend(() => (done ? Effect.void : run))
}

/** An integer column: a number (SQLite, PostgreSQL INTEGER) or a decimal string (PostgreSQL BIGINT, COUNT). */
export const Int = Schema.Union(Schema.Number, Schema.NumberFromString)

/** A nullable column, read as `undefined` when NULL (the records' "absent"), written back as NULL. */
export const Nullable = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.transform(Schema.NullOr(schema), Schema.UndefinedOr(Schema.typeSchema(schema)), {
    strict: true,
    decode: (value) => value ?? undefined,
    encode: (value) => value ?? null
  })

/** A field of a record stored in the column `column` (the tables use snake_case). */
export const column = <S extends Schema.Schema.All, const K extends string>(schema: S, key: K) =>
  Schema.propertySignature(schema).pipe(Schema.fromKey(key))

/** A 0/1 flag column. */
export const Flag = Schema.transform(Int, Schema.Boolean, {
  strict: true,
  decode: (n) => n === 1,
  encode: (b) => (b ? 1 : 0)
})

/** A moment stored as epoch milliseconds, read as an ISO-8601 string (what the API shows). */
export const IsoFromMillis = Schema.transform(Int, Schema.String, {
  strict: true,
  decode: (ms) => new Date(ms).toISOString(),
  encode: (iso) => new Date(iso).getTime()
})
