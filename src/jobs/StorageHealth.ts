/**
 * Whether the job database takes writes right now. A full disk, a read-only file or an I/O error does
 * not stop reads (SQLite answers `SELECT 1` on a full disk), so `/ready` cannot learn it from a ping:
 * the writers report what happens to their writes here, and a probe write every
 * `STORAGE_PROBE_INTERVAL` notices a fault while nothing else writes and its end once the writers are
 * quiet. While writes fail, `/ready` and new submissions answer 503, running jobs start no new calls
 * and keep their finished results in memory, and one error is logged for the whole outage (one info
 * line when it ends) rather than one per failed write.
 */
import { Clock, Config, Data, Duration, Effect, Metric, Option, Schedule, Stream, SubscriptionRef } from "effect"
import { Topology } from "./Topology.js"
import { JobStore } from "./JobStore.js"

/** Refused because writes fail right now; `message` says why, for the client (503). */
export class StorageFailing extends Data.TaggedError("StorageFailing")<{ readonly message: string }> {}

/** The source of failures that only the probe (or any other anonymous write) clears. */
export const ANONYMOUS = "storage"

export interface Outage {
  readonly since: number
  /** What is wrong, in words fit for a client (`the disk is full`), never a stack or a path. */
  readonly reason: string
}

/** The nearest `code` in an error's cause chain (`SQLITE_FULL`, `ECONNREFUSED`, …), if any. */
const codeOf = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    if ("code" in current && typeof current.code === "string") return current.code
    current = "cause" in current ? current.cause : undefined
  }
  return undefined
}

/** Why a write failed, in words: SQLite's result codes first, then a database that does not answer. */
export const reasonOf = (error: unknown): string => {
  const code = codeOf(error)
  if (code === undefined) return "the job database is unavailable"
  if (code === "SQLITE_FULL") return "the disk is full"
  if (code.startsWith("SQLITE_READONLY")) return "the database is read-only"
  if (code.startsWith("SQLITE_IOERR")) return "the disk reports I/O errors"
  if (code.startsWith("SQLITE_CANTOPEN")) return "the database file cannot be opened"
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return "the database is locked"
  return "the job database is unavailable"
}

const failing = Metric.gauge("pp_storage_failing", {
  description: "1 while writes to the job database fail (a full disk, a read-only file, an I/O error, a database that does not answer)"
})

export class StorageHealth extends Effect.Service<StorageHealth>()("parallel-processor/StorageHealth", {
  scoped: Effect.gen(function* () {
    const store = yield* JobStore
    const interval = yield* Config.duration("STORAGE_PROBE_INTERVAL").pipe(Config.withDefault(Duration.seconds(2)))
    // Failures by source, each cleared by its own source's next success: a run's result writer clears
    // only its own, so a small probe write that fits where a batch of results does not (after a failed
    // COMMIT, SQLite reuses the WAL space it had taken) cannot end an outage the writer still sees.
    const failures = new Map<string, { readonly at: number; readonly reason: string }>()
    let outage: Outage | undefined
    /** `true` while no write fails; runs follow it to pause and resume their calls. */
    const working = yield* SubscriptionRef.make(true)

    const settle = (source: string): Effect.Effect<void> =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const first = failures.values().next()
        if (outage === undefined && !first.done) {
          outage = { since: now, reason: first.value.reason }
          yield* Metric.set(failing, 1)
          yield* SubscriptionRef.set(working, false)
          yield* Effect.logError(
            `storage is failing (${outage.reason}): running jobs keep their results in memory and start no new calls, new jobs get 503, until writes work again`
          ).pipe(Effect.annotateLogs({ source }))
        } else if (outage !== undefined && first.done) {
          const lasted = now - outage.since
          outage = undefined
          yield* Metric.set(failing, 0)
          yield* SubscriptionRef.set(working, true)
          yield* Effect.logInfo(`storage works again after ${Duration.format(Duration.millis(lasted))}`).pipe(
            Effect.annotateLogs({ source })
          )
        }
      })

    /** A write (or a read) of `source` failed. Logged once per outage, however many fail. */
    const failed = (source: string, error: unknown) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        failures.set(source, { at, reason: reasonOf(error) })
        return settle(source)
      })

    /** A write of `source` worked; anonymous failures are cleared by any write that works. */
    const succeeded = (source: string) =>
      Effect.suspend(() => {
        if (failures.size === 0) return Effect.void
        failures.delete(source)
        failures.delete(ANONYMOUS)
        return settle(source)
      })

    /** `source` stops retrying (a run gave up): its failure is left for the probe to clear. */
    const release = (source: string) =>
      Effect.suspend(() => {
        const entry = failures.get(source)
        if (entry === undefined) return Effect.void
        failures.delete(source)
        if (!failures.has(ANONYMOUS)) failures.set(ANONYMOUS, entry)
        return settle(source)
      })

    // SQLite lives in this process: a probe that is merely slow waited its turn for the connection
    // and the CPU under a burst of work, and taking that for an outage paused every run (a full disk
    // or a read-only file fails at once, with a code). PostgreSQL is another machine: one that does
    // not answer within 10 s is down, and the outage's end restarts the jobs it stranded.
    const slowIsBusy = (yield* Topology).slowProbe === "busy"
    const probe = store.probe.pipe(
      Effect.timeout(Duration.seconds(10)),
      Effect.matchEffect({
        onFailure: (error) =>
          error._tag === "TimeoutException" && slowIsBusy
            ? Effect.logWarning("the storage probe write took over 10 s (the process is busy); not counted as a fault")
            : failed(ANONYMOUS, error),
        onSuccess: () => succeeded(ANONYMOUS)
      })
    )
    yield* probe.pipe(Effect.repeat(Schedule.spaced(interval)), Effect.interruptible, Effect.forkScoped)

    return {
      failed,
      succeeded,
      release,
      /** The outage under way, if writes fail now. */
      outage: Effect.sync(() => Option.fromNullable(outage)),
      /** Completes at once while writes work, else when they work again. */
      awaitWorking: working.changes.pipe(Stream.filter((ok) => ok), Stream.runHead, Effect.asVoid),
      /** `true`/`false` as writes work or fail, starting with the current state. */
      changes: working.changes,
      /** Fails with `StorageFailing` while writes fail: what refuses new work during an outage. */
      refuseWhileFailing: Effect.suspend(() =>
        outage === undefined
          ? Effect.void
          : Effect.fail(
              new StorageFailing({
                message: `storage is failing (${outage.reason}) since ${new Date(outage.since).toISOString()}: new jobs are refused until writes work again; try again later`
              })
            )
      )
    } as const
  })
}) {}
