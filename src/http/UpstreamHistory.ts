/**
 * The recent history of this instance's upstream budgets, for the dashboard's limit chart
 * (`GET /api/upstreams/history`). A background fiber, started and stopped with the HTTP service,
 * samples every budget every `UPSTREAM_HISTORY_INTERVAL` (2 s) into a ring of the last 300 samples
 * (10 minutes), so a page opened now shows minutes of history, not only what happens while it is open.
 */
import { Clock, Config, Duration, Effect, Schedule } from "effect"
import type { UpstreamHistoryView, UpstreamPoint } from "../domain/Operations.js"
import { UpstreamBudgets, upstreamKeys } from "../upstream/Budgets.js"

export const CAPACITY = 300

export interface Sample {
  /** Epoch ms on the service's clock. */
  readonly at: number
  readonly upstreams: ReadonlyArray<UpstreamPoint>
}

/** A fixed-size ring: `push` overwrites the oldest once full; `toArray` is oldest first. */
export interface Ring<A> {
  readonly push: (a: A) => void
  readonly toArray: () => ReadonlyArray<A>
}

export const ring = <A>(capacity: number): Ring<A> => {
  const slots: Array<A | undefined> = new Array<A | undefined>(capacity).fill(undefined)
  let next = 0
  let size = 0
  return {
    push: (a) => {
      slots[next] = a
      next = (next + 1) % capacity
      size = Math.min(size + 1, capacity)
    },
    toArray: () => {
      const out: Array<A> = []
      for (let i = 0; i < size; i++) {
        const a = slots[(next - size + i + capacity) % capacity]
        if (a !== undefined) out.push(a)
      }
      return out
    }
  }
}

/**
 * Samples `read` now and then every `interval`, in a fiber of the enclosing scope. A failed or
 * dying sample is logged and skipped: the chart has a gap, the sampler goes on.
 */
export const make = (options: {
  readonly read: Effect.Effect<ReadonlyArray<UpstreamPoint>>
  readonly interval: Duration.Duration
  readonly capacity?: number
}) =>
  Effect.gen(function* () {
    const samples = ring<Sample>(options.capacity ?? CAPACITY)
    const sampleOnce = Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const upstreams = yield* options.read
      samples.push({ at, upstreams })
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("upstream history: sample skipped", cause)))
    yield* sampleOnce.pipe(
      Effect.repeat(Schedule.spaced(options.interval)),
      Effect.annotateLogs({ service: "upstream-history" }),
      Effect.forkScoped
    )
    const intervalMs = Duration.toMillis(options.interval)
    return {
      samples: Effect.sync(samples.toArray),
      view: Effect.sync(
        (): UpstreamHistoryView => ({
          intervalMs,
          samples: samples.toArray().map((s) => ({ at: new Date(s.at).toISOString(), upstreams: s.upstreams }))
        })
      )
    } as const
  })

export const config = Config.duration("UPSTREAM_HISTORY_INTERVAL").pipe(
  Config.validate({ message: "Expected a duration of at least 10 milliseconds", validation: (d) => Duration.toMillis(d) >= 10 }),
  Config.withDefault(Duration.seconds(2))
)

export class UpstreamHistory extends Effect.Service<UpstreamHistory>()("parallel-processor/UpstreamHistory", {
  scoped: Effect.gen(function* () {
    const budgets = yield* UpstreamBudgets
    const interval = yield* config
    const read = Effect.forEach(upstreamKeys, (key) =>
      Effect.map(budgets[key].snapshot, (s): UpstreamPoint => ({
        key: s.key,
        limit: s.limit,
        ceiling: s.ceiling,
        inFlight: s.inFlight,
        waiting: s.waiting,
        throttled: s.throttled
      }))
    )
    return yield* make({ read, interval })
  })
}) {}
