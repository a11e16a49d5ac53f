/**
 * Who asks a budget for admission: a `Tenant` (a job, a run) with a priority — the unit of fair
 * share — and how a drain stops one (`stop`) and learns that none of its calls is in flight any
 * more (`awaitIdle`). Re-exported by `Budget`.
 */
import { Effect } from "effect"

/** Highest first: the order in which waiting calls are served. */
export const priorities = ["high", "normal", "low"] as const
export type Priority = (typeof priorities)[number]

/**
 * Who is asking (a job, a run): the unit of fair share. Stopping a tenant (`stop`) makes its
 * waiters give up — they never start and hold nothing — for draining, where calls in flight finish
 * but nothing new starts.
 */
export interface Tenant {
  readonly id: string
  readonly priority: Priority
  stopped: boolean
  /** Calls of this tenant admitted and not yet finished, over every (non-passive) budget. */
  calling: number
  readonly stopListeners: Set<() => void>
  readonly idleListeners: Set<() => void>
}

export const tenant = (id: string, priority: Priority = "normal"): Tenant => ({
  id,
  priority,
  stopped: false,
  calling: 0,
  stopListeners: new Set(),
  idleListeners: new Set()
})

/** Stops a tenant: its waiters leave every budget's queue at once and none of its calls start again. */
export const stop = (t: Tenant): Effect.Effect<void> =>
  Effect.sync(() => {
    t.stopped = true
    for (const listener of Array.from(t.stopListeners)) listener()
  })

/** Completes once none of the tenant's calls is in flight. */
export const awaitIdle = (t: Tenant): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (t.calling === 0) return resume(Effect.void)
    const listener = () => resume(Effect.void)
    t.idleListeners.add(listener)
    return Effect.sync(() => void t.idleListeners.delete(listener))
  })
