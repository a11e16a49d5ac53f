/**
 * The admission queue behind `Budget`: permits up to the current limit, a shared cooldown, an
 * optional request rate, and fair hand-out — priority levels first, round-robin between tenants
 * within a level, first come first served within a tenant. One synchronous `grant` decides all four
 * at once, so a waiter never holds a permit while it waits for a rate token or the end of a cooldown
 * (Effect's `RateLimiter` and `Semaphore` cannot be combined that way, and the Semaphore wakes every
 * waiter on each release, which with hundreds of waiters was most of the CPU of a cluster job).
 */
import type { Rate } from "./rate.js"
import type { Tenant } from "./tenant.js"

export interface Waiter {
  readonly tenant: Tenant
  granted: boolean
  /** Set when granted: the admission time and the calls in flight then, this one included. */
  startedAt: number
  inFlight: number
  readonly wake: (granted: boolean) => void
  readonly onStop: () => void
}

interface TenantQueue {
  readonly tenant: Tenant
  readonly waiters: Set<Waiter>
}

export interface QueueState {
  held: number
  cooldownUntil: number
  rate: Rate | undefined
}

/** Token bucket: bursts up to `burst`, refilled continuously at `rate.limit` per `rate.perMs`. */
class Bucket {
  tokens: number
  last: number
  constructor(
    readonly rate: Rate,
    readonly burst: number,
    now: number
  ) {
    this.tokens = burst
    this.last = now
  }
  refill(now: number) {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate.limit) / this.rate.perMs)
      this.last = now
    }
  }
  /** When the next token will be there. */
  nextAt(now: number): number {
    return Math.ceil(now + ((1 - this.tokens) * this.rate.perMs) / this.rate.limit)
  }
}

export const makeQueue = (options: {
  /** Priority levels, highest first. */
  readonly levels: ReadonlyArray<Tenant["priority"]>
  readonly now: () => number
  readonly limit: () => number
  /** Called with the time at which a blocked grant may succeed (end of cooldown, next rate token). */
  readonly wakeAt: (at: number) => void
  readonly changed: () => void
  /** A waiter had to queue because every permit is in use. */
  readonly blocked: () => void
}) => {
  const state: QueueState = { held: 0, cooldownUntil: 0, rate: undefined }
  // One ring per level; a Set keeps insertion order, so moving a tenant to the back is delete + add.
  const { levels } = options
  const rings = levels.map(() => new Set<TenantQueue>())
  const queues = new Map<Tenant, TenantQueue>()
  let waiting = 0
  let bucket: Bucket | undefined

  const setRate = (rate: Rate | undefined, burst: number) => {
    state.rate = rate
    bucket = rate === undefined ? undefined : new Bucket(rate, Math.max(1, Math.min(rate.limit, burst)), options.now())
  }

  /** Whether a call may start now; if not because of time, when it may. */
  const blockedUntil = (now: number): number | "limit" | undefined => {
    if (state.held >= options.limit()) return "limit"
    if (now < state.cooldownUntil) return state.cooldownUntil
    if (bucket !== undefined) {
      bucket.refill(now)
      if (bucket.tokens < 1) return bucket.nextAt(now)
    }
    return undefined
  }

  const take = (waiter: Waiter, now: number) => {
    state.held++
    if (bucket !== undefined) bucket.tokens -= 1
    waiter.startedAt = now
    waiter.inFlight = state.held
  }

  const nextWaiter = (): Waiter | undefined => {
    for (const ring of rings) {
      for (const queue of ring) {
        for (const waiter of queue.waiters) {
          queue.waiters.delete(waiter)
          ring.delete(queue)
          if (queue.waiters.size > 0) ring.add(queue)
          else queues.delete(queue.tenant)
          return waiter
        }
      }
    }
    return undefined
  }

  const grant = () => {
    let changed = false
    while (waiting > 0) {
      const now = options.now()
      const blocked = blockedUntil(now)
      if (blocked !== undefined) {
        if (blocked !== "limit") options.wakeAt(blocked)
        break
      }
      const waiter = nextWaiter()
      if (waiter === undefined) break
      waiting--
      waiter.tenant.stopListeners.delete(waiter.onStop)
      take(waiter, now)
      waiter.granted = true
      changed = true
      waiter.wake(true)
    }
    if (changed) options.changed()
  }

  /** Admits at once when nobody waits and a call may start; else queues `waiter`. */
  const enqueue = (waiter: Waiter): boolean => {
    const now = options.now()
    if (waiting === 0 && blockedUntil(now) === undefined) {
      take(waiter, now)
      waiter.granted = true
      return true
    }
    let queue = queues.get(waiter.tenant)
    if (queue === undefined) {
      queue = { tenant: waiter.tenant, waiters: new Set() }
      queues.set(waiter.tenant, queue)
      rings[levels.indexOf(waiter.tenant.priority)]?.add(queue)
    }
    queue.waiters.add(waiter)
    waiting++
    waiter.tenant.stopListeners.add(waiter.onStop)
    // A waiter may be blocked by a cooldown or the rate alone: make sure someone wakes it.
    grant()
    if (!waiter.granted && state.held >= options.limit()) options.blocked()
    return waiter.granted
  }

  /** Takes a waiter out of the queue (interrupted, or its tenant stopped). */
  const remove = (waiter: Waiter) => {
    const queue = queues.get(waiter.tenant)
    if (queue === undefined || !queue.waiters.delete(waiter)) return
    waiting--
    waiter.tenant.stopListeners.delete(waiter.onStop)
    if (queue.waiters.size === 0) {
      queues.delete(waiter.tenant)
      rings[levels.indexOf(waiter.tenant.priority)]?.delete(queue)
    }
  }

  const release = () => {
    state.held--
    grant()
  }

  return {
    state,
    enqueue,
    remove,
    release,
    grant,
    setRate,
    waiting: () => waiting,
    waitingTenants: () => queues.size
  }
}
