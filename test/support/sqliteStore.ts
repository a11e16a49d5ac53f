/**
 * A real job store on an SQLite file in a temporary directory (removed afterwards), for unit tests
 * of what runs on the store (a part run, a job's share) without the rest of the service.
 */
import type { SqlClient } from "@effect/sql"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Layer, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { JobStore } from "../../src/jobs/JobStore.js"

/** Runs `self` (scoped) with a fresh store; the directory goes when the outer scope closes. */
export const withSqliteStore = <A, E>(self: Effect.Effect<A, E, JobStore | SqlClient.SqlClient | Scope.Scope>) =>
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-store-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    return yield* Effect.provide(Effect.scoped(self), JobStore.Default.pipe(Layer.provideMerge(SqliteClient.layer({ filename: path.join(dir, "db") }))))
  })
