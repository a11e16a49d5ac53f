/**
 * Admission control at the front door: what this instance accepts it can finish without starving
 * itself. A batch is refused with 503 + `Retry-After` when the items accepted here and not yet
 * finished would pass `MAX_PENDING_ITEMS`, or when the event loop is already late by more than
 * `MAX_EVENT_LOOP_DELAY` (p99 over the last second). Refusing is cheap; accepting work the
 * process cannot keep up with slows every job and every health check alike.
 */
import { Config, Duration, Effect, Metric } from "effect"
import { partsRunning } from "../jobs/JobRunner.js"
import { Jobs } from "../jobs/Jobs.js"
import type { JobView } from "../jobs/Model.js"
import { Overloaded } from "./Api.js"
import * as EventLoop from "./EventLoop.js"

export const pendingItems = Metric.gauge("pp_pending_items", {
  description: "batch items accepted by this instance and not yet finished"
})
export const refused = Metric.counter("pp_admission_refused_total", {
  description: "batches refused with 503 because the instance was at capacity"
})

export const config = Config.all({
  maxPendingItems: Config.integer("MAX_PENDING_ITEMS").pipe(
    Config.validate({ message: "must be a positive number of items", validation: (n) => n > 0 }),
    Config.withDefault(50_000)
  ),
  maxDelay: Config.duration("MAX_EVENT_LOOP_DELAY").pipe(Config.withDefault(Duration.seconds(1)))
})

/** Items finished per second, over the jobs that ended in the last `window` ms. */
const rateWindowMs = 30_000

export class Admission extends Effect.Service<Admission>()("parallel-processor/Admission", {
  scoped: Effect.gen(function* () {
    const { maxPendingItems, maxDelay } = yield* config
    const maxDelayMs = Duration.toMillis(maxDelay)
    // Runs in this process (of jobs accepted anywhere): while one is under way the process is not idle.
    const loop = yield* EventLoop.monitor(Effect.map(Metric.value(partsRunning), (running) => running.value > 0))
    const jobs = yield* Jobs
    const scope = yield* Effect.scope
    let pending = 0
    const ended: Array<{ readonly at: number; readonly items: number }> = []

    /** Drops the ends older than the window: on every push, so the list stays bounded, and before each read. */
    const prune = (now: number) => {
      while (ended.length > 0 && ended[0]!.at < now - rateWindowMs) ended.shift()
    }

    const release = (items: number) =>
      Effect.suspend(() => {
        pending -= items
        const now = Date.now()
        prune(now)
        ended.push({ at: now, items })
        return Metric.set(pendingItems, pending)
      })

    /** Seconds until there is likely room for `items` more, from the recent finishing rate; 1–60. */
    const retryAfter = (items: number) => {
      prune(Date.now())
      const done = ended.reduce((sum, e) => sum + e.items, 0)
      if (done === 0) return 5
      const perSecond = done / (rateWindowMs / 1000)
      const excess = pending + items - maxPendingItems
      return Math.min(60, Math.max(1, Math.ceil(excess / perSecond)))
    }

    const refuse = (message: string, seconds: number): Effect.Effect<never, Overloaded> =>
      Metric.increment(refused).pipe(
        Effect.zipRight(Effect.fail(new Overloaded({ message, retryAfterSeconds: seconds })))
      )

    /**
     * Runs `submit` if this instance has room for `items` more. A batch larger than the whole bound
     * is still taken when nothing else is pending (batches are capped at 10,000 items anyway).
     */
    const admit = <E, R>(
      items: number,
      submit: Effect.Effect<{ readonly job: JobView; readonly created: boolean }, E, R>
    ): Effect.Effect<{ readonly job: JobView; readonly created: boolean }, E | Overloaded, R> =>
      Effect.suspend((): Effect.Effect<{ readonly job: JobView; readonly created: boolean }, E | Overloaded, R> => {
        const delay = loop.p99Ms()
        if (delay > maxDelayMs) {
          return refuse(
            `the service is overloaded (event loop ${Math.round(delay)} ms late, MAX_EVENT_LOOP_DELAY ${maxDelayMs} ms); retry later`,
            2
          )
        }
        if (pending > 0 && pending + items > maxPendingItems) {
          return refuse(
            `this instance has ${pending} item(s) pending and takes at most MAX_PENDING_ITEMS (${maxPendingItems}); retry later`,
            retryAfter(items)
          )
        }
        pending += items
        return Metric.set(pendingItems, pending).pipe(
          Effect.zipRight(submit),
          Effect.onExit((exit) => (exit._tag === "Failure" ? release(items) : Effect.void)),
          Effect.tap(({ job, created }) =>
            created && job.status !== "completed" && job.status !== "cancelled"
              ? // Until the job ends (or this process begins shutting down) its items count as pending. In a
                // cluster the wait is woken by the job's end notification (JobNotifications), not a poll.
                jobs.awaitEnd(job.id).pipe(Effect.ignore, Effect.ensuring(release(items)), Effect.forkIn(scope))
              : release(items)
          )
        )
      })

    return { admit } as const
  })
}) {}
