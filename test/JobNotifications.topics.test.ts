/**
 * Shared-state topics on the notifications' channel (PostgreSQL): a `signal` of the breakers in one
 * "process" wakes the breakers' readers in another, and not the upstreams' readers.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, Queue, Redacted, Stream } from "effect"
import * as JobNotifications from "../src/jobs/JobNotifications.js"
import { createDatabase, postgres } from "./support/postgres.js"

const process_ = (url: string, name: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 3, applicationName: name }))
    return yield* JobNotifications.make({
      sql: Context.get(context, SqlClient.SqlClient),
      pg: Option.some(Context.get(context, PgClient.PgClient)),
      pollInterval: Duration.millis(200)
    })
  })

const follow = (wakes: Stream.Stream<void>) =>
  Effect.gen(function* () {
    const seen = yield* Queue.unbounded<void>()
    yield* wakes.pipe(Stream.runForEach(() => Queue.offer(seen, undefined)), Effect.forkScoped)
    return seen
  })

describe("JobNotifications topics on PostgreSQL", () => {
  it.live(
    "a signal of one topic wakes that topic's readers in another process only",
    () =>
      Effect.gen(function* () {
        const server = yield* postgres
        const url = yield* createDatabase(server.url, "job_notification_topics")
        const a = yield* process_(url, "topics-a")
        const b = yield* process_(url, "topics-b")
        yield* Effect.sleep("1 second")
        expect(b.listening()).toBe(true)
        const breakers = yield* follow(b.topicWakes("breakers"))
        const upstreams = yield* follow(b.topicWakes("upstreams"))
        // One wake-up at once each (the first read).
        yield* Queue.take(breakers).pipe(Effect.timeout("3 seconds"))
        yield* Queue.take(upstreams).pipe(Effect.timeout("3 seconds"))
        yield* a.signal("breakers")
        yield* Queue.take(breakers).pipe(Effect.timeout("3 seconds"))
        yield* Effect.sleep("300 millis")
        expect(yield* Queue.size(upstreams)).toBe(0)
      }).pipe(Effect.scoped),
    60_000
  )
})
