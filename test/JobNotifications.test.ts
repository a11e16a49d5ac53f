/**
 * Job notifications on PostgreSQL: a follower in one "process" (its own pool) is woken by another's
 * announcement of its job only (an `ended` follower not by `items`); when its listen connection is
 * killed it notices (its pings stop coming back), listens again and wakes every follower once to
 * catch up; meanwhile followers are woken by polling.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, Queue, Redacted, Schedule, Stream } from "effect"
import * as JobNotifications from "../src/jobs/JobNotifications.js"
import { createDatabase, postgres } from "./support/postgres.js"

/** A process's view: its own pool on `url`, and its notifications. */
const process_ = (url: string, name: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 3, applicationName: name }))
    const notifications = yield* JobNotifications.make({
      sql: Context.get(context, SqlClient.SqlClient),
      pg: Option.some(Context.get(context, PgClient.PgClient)),
      pollInterval: Duration.millis(200)
    })
    return { notifications, sql: Context.get(context, SqlClient.SqlClient) }
  })

/** Counts a follower's wake-ups into a queue. */
const follow = (wakes: Stream.Stream<void>) =>
  Effect.gen(function* () {
    const seen = yield* Queue.unbounded<void>()
    yield* wakes.pipe(Stream.runForEach(() => Queue.offer(seen, undefined)), Effect.forkScoped)
    return seen
  })

const nextWake = (seen: Queue.Queue<void>) => Queue.take(seen).pipe(Effect.timeout("3 seconds"))
const noWake = (seen: Queue.Queue<void>, within: Duration.DurationInput) =>
  Effect.zipRight(Effect.sleep(within), Queue.size(seen)).pipe(Effect.map((n) => n === 0))

describe("JobNotifications on PostgreSQL", () => {
  it.live(
    "wakes a job's followers in another process; a killed listen connection is noticed, replaced, and followers catch up",
    () =>
      Effect.gen(function* () {
        const server = yield* postgres
        const url = yield* createDatabase(server.url, "job_notifications")
        const a = yield* process_(url, "notify-a")
        const b = yield* process_(url, "notify-b")
        yield* Effect.sleep("1 second")
        expect(b.notifications.listening()).toBe(true)

        const anyChange = yield* follow(b.notifications.wakes("j1"))
        const ended = yield* follow(b.notifications.wakes("j1", "ended"))
        const otherJob = yield* follow(b.notifications.wakes("j2"))
        // One wake-up at once (the first read), for each.
        yield* nextWake(anyChange)
        yield* nextWake(ended)
        yield* nextWake(otherJob)

        yield* a.notifications.announce("j1", "items")
        yield* nextWake(anyChange)
        expect(yield* noWake(ended, "300 millis")).toBe(true)
        expect(yield* noWake(otherJob, "0 millis")).toBe(true)
        yield* a.notifications.announce("j1", "ended")
        yield* nextWake(ended)
        yield* nextWake(anyChange)

        // B's listen connection dies: within a few seconds B stops counting on it (followers poll),
        // then listens on a fresh one and wakes its followers to catch up.
        const killed = yield* a.sql<{ n: number }>`
          SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE application_name = 'notify-b' AND query LIKE 'LISTEN%'`
        expect(killed[0]?.n).toBe(1)
        const listeningIs = (want: boolean) =>
          Effect.sync(() => b.notifications.listening()).pipe(
            Effect.repeat({ until: (listening) => listening === want, schedule: Schedule.spaced("50 millis") }),
            Effect.timeout("8 seconds")
          )
        yield* listeningIs(false)
        // Not listening: the followers are polled.
        yield* Queue.takeAll(otherJob)
        yield* nextWake(otherJob)
        yield* listeningIs(true)
        yield* Queue.takeAll(ended)
        yield* a.notifications.announce("j1", "ended")
        yield* nextWake(ended)
      }).pipe(Effect.scoped),
    60_000
  )
})
