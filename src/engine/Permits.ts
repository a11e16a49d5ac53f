/**
 * A resizable counting semaphore that hands each freed permit straight to the longest waiter (FIFO).
 * Effect's `Semaphore` wakes every waiter on each release and lets them race for the permit: with
 * hundreds of waiters (a cluster-wide limit shared by many workers) that is hundreds of fiber
 * wake-ups per call, which measured as most of the CPU of a 2,000-item job.
 */
import { Effect } from "effect"

export interface Permits {
  /** Runs `self` holding one permit; waits (interruptibly, first come first served) for it. */
  readonly withPermit: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Like `withPermit`, for a member of `group`: once the group is stopped its waiters give up and
   * never run `self` (they wait forever, holding no permit, until interrupted) — for draining, where
   * work that has not started must not start, while work in progress finishes.
   */
  readonly withPermitIn: (group: Group | undefined) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** A new group of waiters. */
  readonly group: () => Group
  /** Stops a group: its waiters leave the queue at once, and none of it starts again. */
  readonly stop: (group: Group) => Effect.Effect<void>
  /** Changes the number of permits. Shrinking never takes a permit back: holders finish first. */
  readonly resize: (size: number) => Effect.Effect<void>
  /** Permits held right now. */
  readonly inUse: () => number
  /** Fibers waiting for a permit right now. */
  readonly waiting: () => number
}

/**
 * Waiters that can be told to give up together (a run that is draining): once stopped, the group's
 * waiters leave the queue and never start, and it never starts anything again.
 */
export interface Group {
  stopped: boolean
}

interface Waiter {
  granted: boolean
  readonly group: Group | undefined
  readonly wake: (granted: boolean) => void
}

export const unsafeMake = (initial: number): Permits => {
  let size = Math.max(0, initial)
  let held = 0
  // A Set keeps insertion order and removes an interrupted waiter in O(1).
  const queue = new Set<Waiter>()

  const grant = () => {
    for (const waiter of queue) {
      if (held >= size) return
      queue.delete(waiter)
      held++
      waiter.granted = true
      waiter.wake(true)
    }
  }
  const release = Effect.sync(() => {
    held--
    grant()
  })
  // No fibers forked per call: this is on every attempt's path.
  const acquire = (group: Group | undefined) =>
    Effect.async<boolean>((resume) => {
      if (group?.stopped === true) return resume(Effect.succeed(false))
      if (queue.size === 0 && held < size) {
        held++
        return resume(Effect.succeed(true))
      }
      const waiter: Waiter = { granted: false, group, wake: (granted) => resume(Effect.succeed(granted)) }
      queue.add(waiter)
      // Interrupted while waiting: leave the queue, or pass on a permit granted in the meantime.
      return Effect.sync(() => {
        if (waiter.granted) {
          held--
          grant()
        } else {
          queue.delete(waiter)
        }
      })
    })
  const withPermitIn = (group: Group | undefined) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(acquire(group)), (granted): Effect.Effect<A, E, R> => {
        if (!granted) return restore(Effect.never)
        // Granted just before the group stopped: hand the permit on, do not start.
        if (group?.stopped === true) return Effect.zipRight(release, restore(Effect.never))
        return Effect.ensuring(restore(self), release)
      })
    )

  return {
    withPermit: withPermitIn(undefined),
    withPermitIn,
    group: () => ({ stopped: false }),
    stop: (group) =>
      Effect.sync(() => {
        group.stopped = true
        for (const waiter of queue) {
          if (waiter.group !== group) continue
          queue.delete(waiter)
          waiter.wake(false)
        }
      }),
    resize: (n) =>
      Effect.sync(() => {
        size = Math.max(0, n)
        grant()
      }),
    inUse: () => held,
    waiting: () => queue.size
  }
}

export const make = (initial: number): Effect.Effect<Permits> => Effect.sync(() => unsafeMake(initial))
