/**
 * The run's timers. Per-attempt timeouts are enforced by one watchdog fiber per run that interrupts
 * the worker whose attempt ran past its deadline (the task's AbortSignal fires), and a replacement
 * worker takes the slot (see worker.ts). That keeps the hot path free of the race/fork that
 * `Effect.timeout` costs per call. The watchdog sleeps until the earliest deadline, or parks while
 * no attempt has one; starting an attempt wakes it.
 *
 * Also the whole-run deadline's timer.
 */
import { Duration, Effect, Fiber } from "effect"
import { park, stop, type RunState, type Slot } from "./state.js"

const watchdog = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> => {
  const sleep = park((wake) => {
    run.watchdogIdle = wake
  })
  const loop: Effect.Effect<void> = Effect.suspend(() => {
    const t = run.now()
    let earliest = Number.POSITIVE_INFINITY
    const expired: Array<Slot<I>> = []
    for (const slot of run.slots) {
      if (!slot.inAttempt || slot.timedOut) continue
      if (slot.attemptDeadline <= t) expired.push(slot)
      else if (slot.attemptDeadline < earliest) earliest = slot.attemptDeadline
    }
    for (const slot of expired) {
      slot.timedOut = true
      if (slot.fiber !== undefined) slot.fiber.unsafeInterruptAsFork(slot.fiber.id())
    }
    if (earliest === Number.POSITIVE_INFINITY) return Effect.zipRight(sleep, loop)
    // Whole milliseconds, at least one: a gap of a fraction of a nanosecond (clock readings are
    // fractional) became a zero sleep, and the watchdog spun without the clock moving.
    return Effect.zipRight(Effect.sleep(Duration.millis(Math.max(1, Math.ceil(earliest - t)))), loop)
  })
  return loop
}

/** (Re)starts the watchdog in the run's scope, e.g. because a deadline moved earlier than its wake-up. */
export const restartWatchdog = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const old = run.watchdogFiber
    return Effect.zipRight(
      old === undefined ? Effect.void : Fiber.interrupt(old),
      Effect.map(Effect.forkIn(watchdog(run), run.scope), (f) => {
        run.watchdogFiber = f
      })
    )
  })

/**
 * A changed attempt timeout applies to the attempts already running; a shorter one can make one due
 * at once. A call that ran without a timeout (`Duration.infinity`) gets the new one from now.
 */
export const setTimeoutMs = <I, A, E>(run: RunState<I, A, E>, ms: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const change = ms - run.timeoutMs
    run.timeoutMs = ms
    const now = run.now()
    for (const slot of run.slots) {
      if (!slot.inAttempt) continue
      if (Number.isFinite(slot.attemptDeadline)) slot.attemptDeadline += change
      else if (slot.calling) slot.attemptDeadline = now + ms
    }
    return change < 0 ? restartWatchdog(run) : Effect.void
  })

/** Stops the run when the whole-run deadline passes (forked in the run's scope). */
export const deadlineTimer = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.sleep(Duration.millis(Math.max(0, run.deadlineAt - run.startedAt))),
    Effect.sync(() => stop(run, "deadline"))
  )
