/**
 * A resizable counting semaphore that hands each freed permit straight to the longest waiter (FIFO).
 * Effect's `Semaphore` wakes every waiter on each release and lets them race for the permit: with
 * hundreds of waiters (a cluster-wide limit shared by many workers) that is hundreds of fiber
 * wake-ups per call, which measured as most of the CPU of a 2,000-item job.
 */
import { Deferred, Effect } from "effect"

export interface Permits {
  /** Runs `self` holding one permit; waits (interruptibly, first come first served) for it. */
  readonly withPermit: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Like `withPermit`, but gives up waiting once `stop` is done, and then never runs `self` (it
   * waits forever, holding no permit, until interrupted): for draining, where work that has not
   * started must not start, while work in progress finishes.
   */
  readonly withPermitUnless: (
    stop: Deferred.Deferred<void>
  ) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Changes the number of permits. Shrinking never takes a permit back: holders finish first. */
  readonly resize: (size: number) => Effect.Effect<void>
  /** Permits held right now. */
  readonly inUse: () => number
  /** Fibers waiting for a permit right now. */
  readonly waiting: () => number
}

interface Waiter {
  granted: boolean
  readonly wake: () => void
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
      waiter.wake()
    }
  }
  const release = Effect.sync(() => {
    held--
    grant()
  })
  const acquire = Effect.async<void>((resume) => {
    if (queue.size === 0 && held < size) {
      held++
      resume(Effect.void)
      return
    }
    const waiter: Waiter = { granted: false, wake: () => resume(Effect.void) }
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

  return {
    withPermit: (self) =>
      Effect.uninterruptibleMask((restore) => Effect.zipRight(restore(acquire), Effect.ensuring(restore(self), release))),
    withPermitUnless: (stop) => (self) =>
      Effect.uninterruptibleMask((restore) =>
        restore(Effect.raceFirst(Effect.as(acquire, true), Effect.as(Deferred.await(stop), false))).pipe(
          Effect.flatMap((granted) => {
            if (!granted) return restore(Effect.never)
            return Effect.flatMap(Deferred.isDone(stop), (stopped) =>
              // Granted at the moment the stop came: hand the permit on, do not start.
              stopped ? Effect.zipRight(release, restore(Effect.never)) : Effect.ensuring(restore(self), release)
            )
          })
        )
      ),
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
