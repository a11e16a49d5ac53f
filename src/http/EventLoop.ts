/**
 * Keeping the service's event loop responsive under load.
 *
 * - `timeSliced`: an Effect scheduler that runs fiber work in slices of a few milliseconds and then
 *   lets Node poll for I/O before the next slice. Effect's default scheduler resumes fibers in
 *   microtasks (up to 2,048 in a row per fiber); with a few thousand busy fibers the microtask
 *   queue never empties and Node reads no socket: during a burst of 150 sync batches `/health`
 *   took up to 9 s to answer. With slices the longest wait is one slice plus one task.
 * - `monitor`: the event loop's delay (Node's `monitorEventLoopDelay`), exported as a metric and
 *   read by the front door's admission control.
 */
import { Effect, Metric, Scheduler, Scope } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"

class TimeSlicedScheduler implements Scheduler.Scheduler {
  private tasks = new Scheduler.PriorityBuckets()
  private pending = false
  constructor(private readonly sliceMs: number) {}

  shouldYield = Scheduler.defaultShouldYield

  scheduleTask(task: Scheduler.Task, priority: number) {
    this.tasks.scheduleTask(task, priority)
    if (!this.pending) {
      this.pending = true
      queueMicrotask(this.drain)
    }
  }

  private readonly drain = () => {
    const until = performance.now() + this.sliceMs
    let checked = 0
    while (this.tasks.buckets.length > 0) {
      const buckets = this.tasks.buckets
      this.tasks.buckets = []
      for (let b = 0; b < buckets.length; b++) {
        const run = buckets[b]![1]
        for (let i = 0; i < run.length; i++) {
          run[i]!()
          // Reading the clock costs ~30 ns; every 8 tasks keeps it invisible next to a fiber step.
          if ((++checked & 7) === 0 && performance.now() > until) {
            this.requeue(buckets, b, i + 1)
            setImmediate(this.drain)
            return
          }
        }
      }
    }
    this.pending = false
  }

  /** Puts the tasks not yet run back in front of those scheduled while this slice ran, in order. */
  private requeue(buckets: Array<[number, Array<Scheduler.Task>]>, bucket: number, next: number) {
    const later = this.tasks.buckets
    this.tasks.buckets = []
    for (let b = bucket; b < buckets.length; b++) {
      const [priority, run] = buckets[b]!
      for (let i = b === bucket ? next : 0; i < run.length; i++) this.tasks.scheduleTask(run[i]!, priority)
    }
    for (const [priority, run] of later) for (const task of run) this.tasks.scheduleTask(task, priority)
  }
}

/** A scheduler that yields to Node's I/O at least every `sliceMs` milliseconds. */
export const timeSliced = (sliceMs: number): Scheduler.Scheduler => new TimeSlicedScheduler(sliceMs)

/** Event-loop delay p99 over the last window, in milliseconds (`pp_event_loop_delay_p99_seconds`). */
export const delayP99 = Metric.gauge("pp_event_loop_delay_p99_seconds", {
  description: "99th percentile of the event loop's delay over the last second"
})

export interface EventLoopMonitor {
  /** p99 of the delay over the last completed window, milliseconds. */
  readonly p99Ms: () => number
}

/** Samples the event loop's delay every second for as long as the scope lives. */
export const monitor: Effect.Effect<EventLoopMonitor, never, Scope.Scope> = Effect.gen(function* () {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  let last = 0
  yield* Effect.acquireRelease(Effect.sync(() => histogram.enable()), () => Effect.sync(() => histogram.disable()))
  yield* Effect.sync(() => {
    last = histogram.percentile(99) / 1e6
    histogram.reset()
  }).pipe(
    Effect.tap(() => Metric.set(delayP99, last / 1000)),
    Effect.zipRight(Effect.sleep("1 second")),
    Effect.forever,
    Effect.forkScoped
  )
  return { p99Ms: () => last }
})
