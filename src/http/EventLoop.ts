/**
 * Keeping the service's event loop responsive under load, and its memory from staying at a burst's peak.
 *
 * - `timeSliced`: an Effect scheduler that runs fiber work in slices of a few milliseconds and then
 *   lets Node poll for I/O before the next slice. Effect's default scheduler resumes fibers in
 *   microtasks (up to 2,048 in a row per fiber); with a few thousand busy fibers the microtask
 *   queue never empties and Node reads no socket: during a burst of 150 sync batches `/health`
 *   took up to 9 s to answer. With slices the longest wait is one slice plus one task.
 * - `monitor`: the event loop's delay (Node's `monitorEventLoopDelay`), exported as a metric and
 *   read by the front door's admission control; it also samples the process's memory for `/metrics`
 *   and collects garbage once when the process falls idle after work: soon when the work left a
 *   burst's worth of it, otherwise after a longer pause (see `collector`, `MIN_GARBAGE_BYTES`,
 *   `LONG_QUIET_SECONDS`).
 */
import { Effect, type Fiber, FiberRef, Metric, Scheduler, type Scope } from "effect"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

/**
 * Marks fibers that serve people waiting on the other end (the HTTP server's request fibers): their
 * steps run before queued job work, so `/health` or a job's status does not wait its turn behind
 * thousands of busy item fibers (FIFO alone: /health p99 ~110-200 ms during a 150-batch burst).
 */
export const interactive = FiberRef.unsafeMake(false)

/** A FIFO of tasks that does not shift arrays (a burst queues tens of thousands). */
class TaskQueue {
  private items: Array<Scheduler.Task> = []
  private head = 0
  push(task: Scheduler.Task) {
    this.items.push(task)
  }
  shift(): Scheduler.Task | undefined {
    if (this.head >= this.items.length) return undefined
    const task = this.items[this.head++]
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return task
  }
}

class TimeSlicedScheduler implements Scheduler.Scheduler {
  private readonly urgent = new TaskQueue()
  private readonly normal = new TaskQueue()
  private pending = false
  constructor(private readonly sliceMs: number) {}

  shouldYield = Scheduler.defaultShouldYield

  scheduleTask(task: Scheduler.Task, _priority: number, fiber?: Fiber.RuntimeFiber<unknown, unknown>) {
    if (fiber !== undefined && fiber.getFiberRef(interactive)) this.urgent.push(task)
    else this.normal.push(task)
    if (!this.pending) {
      this.pending = true
      queueMicrotask(this.drain)
    }
  }

  private readonly drain = () => {
    const until = performance.now() + this.sliceMs
    let ran = 0
    for (;;) {
      const task = this.urgent.shift() ?? this.normal.shift()
      if (task === undefined) break
      try {
        task()
      } catch (error) {
        // A task that throws must not strand the rest (`pending` set, no drain scheduled).
        setImmediate(this.drain)
        throw error
      }
      // Reading the clock costs ~30 ns; every 8 tasks keeps it invisible next to a fiber step.
      if ((++ran & 7) === 0 && performance.now() > until) {
        // Let Node poll for I/O (new requests, upstream answers, timers), then go on.
        setImmediate(this.drain)
        return
      }
    }
    this.pending = false
  }
}

/** A scheduler that yields to Node's I/O at least every `sliceMs` milliseconds, `interactive` fibers first. */
export const timeSliced = (sliceMs: number): Scheduler.Scheduler => new TimeSlicedScheduler(sliceMs)

/** Event-loop delay p99 over the last window, in milliseconds (`pp_event_loop_delay_p99_seconds`). */
export const delayP99 = Metric.gauge("pp_event_loop_delay_p99_seconds", {
  description: "99th percentile of the event loop's delay over the last second"
})

const memory = {
  rss: Metric.gauge("pp_process_resident_memory_bytes", { description: "resident set size of the process" }),
  heapUsed: Metric.gauge("pp_heap_used_bytes", { description: "V8 heap in use" }),
  heapTotal: Metric.gauge("pp_heap_total_bytes", { description: "V8 heap committed" }),
  external: Metric.gauge("pp_external_memory_bytes", { description: "memory held outside the V8 heap for JS objects (buffers)" })
}

const sampleMemory = Effect.suspend(() => {
  const m = process.memoryUsage()
  return Effect.all(
    [Metric.set(memory.rss, m.rss), Metric.set(memory.heapUsed, m.heapUsed), Metric.set(memory.heapTotal, m.heapTotal), Metric.set(memory.external, m.external)],
    { discard: true }
  )
})

/**
 * V8 collects when it allocates; a process that falls idle after a burst allocates nothing and keeps
 * its garbage: RSS stayed at ~700 MB (heap in use 427 MB, of which 98 MB live) long after 600 jobs
 * had finished. So once the loop has been quiet for a few seconds after work, collect once. The
 * collector is reached through `--expose-gc` set at run time (Node has no other public handle on it).
 */
const collector = (): (() => void) | undefined => {
  try {
    setFlagsFromString("--expose-gc")
    const gc: unknown = runInNewContext("gc")
    // Twice: the second full collection finds the pages the first one emptied and gives them back.
    return typeof gc === "function"
      ? () => {
          Reflect.apply(gc, undefined, [])
          Reflect.apply(gc, undefined, [])
        }
      : undefined
  } catch {
    return undefined
  }
}

/** Idle collections by why they ran: `burst` (a burst's garbage, soon) or `idle` (a long pause). */
const idleCollections = Metric.counter("pp_idle_collections_total", {
  description: "full garbage collections the service ran when it fell idle after work",
  incremental: true
})

const RESOLUTION_MS = 50

/** Seconds of a quiet loop (utilisation under 5 %) after busy ones before a burst's garbage is collected. */
const QUIET_SECONDS = 5

/**
 * Seconds of a quiet loop after which whatever work left is collected, burst or not. The garbage
 * threshold (`MIN_GARBAGE_BYTES`) spares a busy service a re-optimisation after every short pause, but
 * alone it let RSS stay up: in CI (the test files side by side), 360 ten-item jobs left RSS at 457 MB
 * against 254 MB before them, and 45 s of idleness later it was still there (on a quiet machine the
 * same jobs leave a burst's garbage and are collected at 5 s). After this long a pause the next job's
 * one re-optimisation is a small price for giving the memory back.
 */
const LONG_QUIET_SECONDS = 20

export interface EventLoopMonitor {
  /** p99 of the delay over the last completed window, milliseconds. */
  readonly p99Ms: () => number
}

/**
 * Garbage worth giving back: the heap in use above what the last collection left live. A full
 * collection is not free for the work after it: V8 optimises the hot paths again (217 TurboFan
 * compilations in the next 2,000-item job against 13–30, and 115 in the one after), which ran at 2 ×
 * the CPU per item (helper threads 60 → 330–395 µs/item) and 1.3–1.4 × the wall time. A collection
 * after an ordinary job gave back ~16 MB of a 91 MB heap and no RSS; after a few jobs the heap in use
 * reaches ~230 MB with ~75 MB live (a collection there gave back 133 MB of RSS, and the next job paid
 * the same); a burst leaves 427 MB in use with 98 MB live (above). So only a burst's worth is
 * collected (`scripts/idle-gap.ts`: 2,000-item jobs after idle gaps of 1, 3 and 8 s).
 */
export const MIN_GARBAGE_BYTES = 256 * 1024 * 1024

/**
 * When to collect: after a second of work (utilisation over 20 %, or `working`: a job runs here,
 * however little it asks of the loop) followed by quiet ones (under 5 %, nothing running),
 * at most once per quiet spell: after `quietSeconds` when the heap in use is at least `minGarbage`
 * bytes above what the last collection left live (`live`: before the first one, the heap at start),
 * otherwise after `longQuietSeconds` whatever the heap holds. `sample` takes the last second's
 * utilisation and the heap in use now and says whether to collect and why (`pp_idle_collections_total`'s
 * `reason`); `collected` records what a collection left.
 */
export const idleCollection = (
  options: { readonly quietSeconds: number; readonly longQuietSeconds: number; readonly minGarbageBytes: number },
  live = 0
) => {
  let busy = false
  let quiet = 0
  return {
    sample: (utilization: number, heapUsed: number, working = false): "burst" | "idle" | undefined => {
      if (working || utilization > 0.2) {
        busy = true
        quiet = 0
        return undefined
      }
      if (!busy || utilization >= 0.05) return undefined
      quiet++
      const reason = quiet === options.quietSeconds && heapUsed - live >= options.minGarbageBytes
        ? "burst"
        : quiet >= options.longQuietSeconds
        ? "idle"
        : undefined
      if (reason !== undefined) busy = false
      return reason
    },
    collected: (heapUsedAfter: number) => {
      live = heapUsedAfter
    }
  }
}

/**
 * Samples the event loop's delay (and the process's memory, for `/metrics`) every second for as long
 * as the scope lives. `options` are for tests: the collector (default: V8's, see `collector`) and the
 * quiet seconds before it runs.
 */
export const monitorWith = (options: {
  readonly collect: (() => void) | undefined
  readonly quietSeconds: number
  /** See `LONG_QUIET_SECONDS` (the service's). */
  readonly longQuietSeconds: number
  /** See `MIN_GARBAGE_BYTES` (the service's); 0 collects after every quiet spell of `quietSeconds`. */
  readonly minGarbageBytes: number
  /**
   * Whether work is under way here (a job's run): a second of it is never quiet. Slow upstream calls
   * leave the loop under 5 % busy for seconds on end, and a collection there (150-400 ms, then V8's
   * re-optimisation) would land in the middle of a job.
   */
  readonly working?: Effect.Effect<boolean>
}): Effect.Effect<EventLoopMonitor, never, Scope.Scope> => Effect.gen(function* () {
  // Sampled every 50 ms: 20 samples a second are plenty for a p99 compared against
  // MAX_EVENT_LOOP_DELAY (1 s), and every sample is a wake-up of the event loop — at 10 ms they cost
  // ~5 CPU ms/s of an idle process.
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  let last = 0
  const gc = options.collect
  const collection = idleCollection(options, process.memoryUsage().heapUsed)
  let elu = performance.eventLoopUtilization()
  yield* Effect.acquireRelease(Effect.sync(() => histogram.enable()), () => Effect.sync(() => histogram.disable()))
  const idleCollect = Effect.flatMap(options.working ?? Effect.succeed(false), (working) => {
    const now = performance.eventLoopUtilization()
    const utilization = performance.eventLoopUtilization(now, elu).utilization
    elu = now
    if (gc === undefined) return Effect.void
    const before = process.memoryUsage().heapUsed
    const reason = collection.sample(utilization, before, working)
    if (reason === undefined) return Effect.void
    gc()
    const after = process.memoryUsage().heapUsed
    collection.collected(after)
    // The collection itself (a full one takes 150-400 ms of a 65 MB heap) is not work: counted in
    // the next second's utilisation it made that second "busy", and every idle process collected
    // again 5 s later, and again, forever — two full collections every ~6.5 s, the largest part of
    // an idle instance's CPU (bench-results/idle-cost/).
    elu = performance.eventLoopUtilization()
    return Metric.increment(Metric.tagged(idleCollections, "reason", reason)).pipe(
      Effect.zipRight(Effect.logDebug(`idle collection (${reason}): heap in use ${Math.round(before / 1e6)} → ${Math.round(after / 1e6)} MB`))
    )
  })
  yield* Effect.sync(() => {
    // The histogram records each interval between samples, the resolution included: the lateness is
    // what exceeds it (at 10 ms the figure carried 10 ms that were not delay, at 50 ms it would carry 50).
    last = Math.max(0, histogram.percentile(99) / 1e6 - RESOLUTION_MS)
    histogram.reset()
  }).pipe(
    Effect.zipRight(idleCollect),
    Effect.tap(() => Metric.set(delayP99, last / 1000)),
    Effect.zipRight(sampleMemory),
    Effect.zipRight(Effect.sleep("1 second")),
    Effect.forever,
    Effect.forkScoped
  )
  return { p99Ms: () => last }
})

/** The service's monitor: V8's collector when falling idle after work (see `monitorWith`). */
export const monitor = (working: Effect.Effect<boolean>): Effect.Effect<EventLoopMonitor, never, Scope.Scope> =>
  Effect.suspend(() =>
    monitorWith({
      collect: collector(),
      quietSeconds: QUIET_SECONDS,
      longQuietSeconds: LONG_QUIET_SECONDS,
      minGarbageBytes: MIN_GARBAGE_BYTES,
      working
    })
  )
