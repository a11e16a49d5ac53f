/**
 * How an instance sharing a PostgreSQL database hears that another one stored results of a job or
 * ended it: the writer `NOTIFY`s one channel, and each process keeps one `LISTEN` connection
 * (`PgClient.listen`) whose notifications wake that job's followers, which then read the database.
 * Following a job used to read it every 100 ms per follower (and per job waiting in admission).
 *
 * A listen connection that breaks does not end `PgClient.listen`'s stream (the client swallows the
 * error), so each process checks its own: it notifies itself every second and starts listening again
 * when its pings stop coming back. Until it listens again (the database restarting, or no
 * `PgClient` at all), followers are woken every `pollInterval` (`JOB_EVENTS_POLL_INTERVAL`), and once it
 * listens they are all woken once to catch up. A notification can still be lost (the writer's instance
 * died between its commit and its `NOTIFY`): every follower is also woken every `SWEEP` as a backstop.
 *
 * The same channel carries changes of the state the instances share besides jobs (`Topic`: the
 * breakers, the upstream budgets' cooldowns and settings), so those are read when one changes instead
 * of four times a second each (`ClusterBreakers`, `ClusterBudgets`).
 */
import { PgClient } from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql"
import { Config, Context, Data, Duration, Effect, Layer, Option, Queue, Schedule, type Scope, Stream } from "effect"

export type Change = "items" | "ended"

/** Shared state other than a job's whose changes are announced: read by every instance when woken. */
export type Topic = "breakers" | "upstreams"

export interface JobNotifications {
  /** Tells every instance's followers of `jobId` about `change` (best effort: followers also sweep). */
  readonly announce: (jobId: string, change: Change) => Effect.Effect<void>
  /**
   * Wake-ups for a follower of `jobId`: one at once, then one per notification (of `only`, when
   * given), at every catch-up and sweep, and every poll interval while not listening. Wake-ups that
   * come while the follower is busy are merged into one.
   */
  readonly wakes: (jobId: string, only?: Change) => Stream.Stream<void>
  /** Tells every instance that `topic`'s shared state changed (best effort: readers also sweep). */
  readonly signal: (topic: Topic) => Effect.Effect<void>
  /**
   * Wake-ups for a reader of `topic`: one at once, then one per `signal` of it, at every catch-up and
   * sweep, and every poll interval while not listening (merged while the reader is busy).
   */
  readonly topicWakes: (topic: Topic) => Stream.Stream<void>
  /** Whether notifications are being heard right now (a reader that must not wait a sweep polls meanwhile). */
  readonly listening: () => boolean
}

/** This process's notifications (cluster topology only). */
export class Notifications extends Context.Tag("parallel-processor/JobNotifications")<Notifications, JobNotifications>() {}

/** Topics share the followers' table under names no job id takes (ids are UUIDs). */
const topicKey = (topic: Topic) => `#${topic}`

const CHANNEL = "pp_job_changes"
const HEARTBEAT = Duration.seconds(1)
/** Pings not heard back for this long: the listen connection is taken for broken. */
const SILENCE_MS = 3_500
const SWEEP = Duration.seconds(5)

/** The listen connection stopped answering (or never did). */
class ListenLost extends Data.TaggedError("ListenLost")<{ readonly message: string }> {}

interface Follower {
  readonly only: Change | undefined
  readonly wake: Queue.Queue<void>
}

/** `items:<job id>`, `ended:<job id>` or `ping:<process token>`. */
const parse = (payload: string): { readonly kind: string; readonly subject: string } | undefined => {
  const colon = payload.indexOf(":")
  return colon < 0 ? undefined : { kind: payload.slice(0, colon), subject: payload.slice(colon + 1) }
}

export const make = (options: {
  readonly sql: SqlClient.SqlClient
  /** `None` (a client without `LISTEN`): followers poll. */
  readonly pg: Option.Option<PgClient>
  readonly pollInterval: Duration.DurationInput
}): Effect.Effect<JobNotifications, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { sql } = options
    const followers = new Map<string, Set<Follower>>()
    const token = globalThis.crypto.randomUUID()
    let listening = false
    /** Open while not listening: what the polling fallback waits on. */
    const notListening = yield* Effect.makeLatch(true)
    const setListening = (now: boolean) =>
      Effect.suspend(() => {
        listening = now
        return now ? notListening.close : notListening.open
      })

    const wakeAll = Effect.sync(() => {
      for (const set of followers.values()) for (const f of set) Queue.unsafeOffer(f.wake, undefined)
    })
    const wakeJob = (jobId: string, change: Change) => {
      const set = followers.get(jobId)
      if (set === undefined) return
      for (const f of set) if (f.only === undefined || f.only === change) Queue.unsafeOffer(f.wake, undefined)
    }

    const notify = (payload: string) => sql`SELECT pg_notify(${CHANNEL}, ${payload})`.pipe(Effect.asVoid)

    const announce = (jobId: string, change: Change) =>
      notify(`${change}:${jobId}`).pipe(
        // On the result writer's path: a database slow to answer must not hold the next batch.
        Effect.timeout(Duration.seconds(2)),
        Effect.catchAll((error) =>
          Effect.logDebug(`could not announce ${change} of job ${jobId}; followers catch up at their next sweep: ${error.message}`)
        )
      )

    /** One listen session: confirmed by hearing its own ping, ended (failing) when its pings stop coming back. */
    const session = (pg: PgClient) =>
      Effect.scoped(
        Effect.gen(function* () {
          let heardAt = 0
          yield* pg.listen(CHANNEL).pipe(
            Stream.runForEach((payload) =>
              Effect.sync(() => {
                const message = parse(payload)
                if (message === undefined) return
                if (message.kind === "ping") {
                  if (message.subject === token) heardAt = Date.now()
                } else if (message.kind === "items" || message.kind === "ended") {
                  wakeJob(message.subject, message.kind)
                }
              })
            ),
            Effect.tapError((error) => Effect.logDebug(`job notifications: listen failed: ${error.message}`)),
            Effect.ignore,
            // Whichever way the stream ends, the pings stop coming back and the session ends below.
            Effect.interruptible,
            Effect.forkScoped
          )
          const ping = notify(`ping:${token}`)
          // Confirmed once our own ping comes back: from then on nothing sent is missed.
          const started = Date.now()
          while (heardAt === 0) {
            yield* ping
            yield* Effect.sleep(Duration.millis(100))
            if (Date.now() - started > SILENCE_MS) return yield* new ListenLost({ message: "no answer to the first ping" })
          }
          yield* setListening(true)
          // What was stored while nobody listened (or before this follower's first read) is read now.
          yield* wakeAll
          yield* Effect.logDebug("job notifications: listening")
          for (;;) {
            yield* Effect.sleep(HEARTBEAT)
            yield* ping
            if (Date.now() - heardAt > SILENCE_MS) return yield* new ListenLost({ message: "pings stopped coming back" })
          }
        })
      ).pipe(Effect.ensuring(setListening(false)))

    if (Option.isSome(options.pg)) {
      const pg = options.pg.value
      yield* session(pg).pipe(
        Effect.catchAll((error) =>
          Effect.logDebug(`job notifications: not listening (${error.message}); followers poll until listening again`)
        ),
        Effect.zipRight(Effect.sleep(Duration.millis(500))),
        Effect.forever,
        Effect.interruptible,
        Effect.forkScoped
      )
    }
    // The fallback: while not listening, followers read the database every poll interval. While
    // listening the loop waits on the latch instead of waking every poll interval to find nothing to
    // do (10 wake-ups a second per idle instance at the default 100 ms).
    yield* notListening.await.pipe(
      Effect.zipRight(wakeAll),
      Effect.zipRight(Effect.sleep(options.pollInterval)),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )
    yield* wakeAll.pipe(Effect.repeat(Schedule.spaced(SWEEP)), Effect.interruptible, Effect.forkScoped)

    const wakes = (jobId: string, only?: Change): Stream.Stream<void> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const wake = yield* Queue.sliding<void>(1)
          const follower: Follower = { only, wake }
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              const set = followers.get(jobId) ?? new Set<Follower>()
              set.add(follower)
              followers.set(jobId, set)
            }),
            () =>
              Effect.sync(() => {
                const set = followers.get(jobId)
                set?.delete(follower)
                if (set?.size === 0) followers.delete(jobId)
              })
          )
          yield* Queue.offer(wake, undefined)
          return Stream.fromQueue(wake)
        })
      )

    return {
      announce,
      wakes,
      signal: (topic) => announce(topicKey(topic), "items"),
      topicWakes: (topic) => wakes(topicKey(topic)),
      listening: () => listening
    }
  })

/**
 * One per process, shared by the topology (job followers) and the breaker and budget sync. The client
 * is a `PgClient` at runtime (`Database.layer`); without one, followers poll.
 */
export const layer: Layer.Layer<Notifications, never, SqlClient.SqlClient> = Layer.scoped(
  Notifications,
  Effect.gen(function* () {
    const pollInterval = yield* Config.duration("JOB_EVENTS_POLL_INTERVAL").pipe(Config.withDefault(Duration.millis(100)), Effect.orDie)
    return yield* make({ sql: yield* SqlClient.SqlClient, pg: yield* Effect.serviceOption(PgClient), pollInterval })
  })
)

/**
 * Keeps a reader of `topic`'s shared state current: `read` runs at once, then at every wake-up of
 * the topic (a signal, a catch-up, the sweep) and, while notifications are not heard or `pollToo()`
 * holds, every `every` as well. Runs until interrupted; fork it in the reader's scope. Shared by the
 * breaker and upstream-budget sync (`ClusterBreakers`, `ClusterBudgets`).
 */
export const readOnWake = (
  notifications: JobNotifications,
  topic: Topic,
  read: Effect.Effect<void>,
  every: Duration.DurationInput,
  pollToo: () => boolean = () => false
): Effect.Effect<never, never, Scope.Scope> =>
  Effect.gen(function* () {
    // Wake-ups that come while `read` runs are merged into one.
    const wake = yield* Queue.sliding<void>(1)
    yield* notifications.topicWakes(topic).pipe(
      Stream.runForEach(() => Queue.offer(wake, undefined)),
      Effect.interruptible,
      Effect.forkScoped
    )
    const woken = Queue.take(wake)
    const wokenOrPolled = Effect.race(Effect.sleep(every), woken)
    const next = Effect.suspend(() => (pollToo() || !notifications.listening() ? wokenOrPolled : woken))
    return yield* Effect.forever(Effect.zipRight(read, next))
  })
