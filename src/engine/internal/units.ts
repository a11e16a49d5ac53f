/**
 * What the pool tracks per item (`Unit`, from the moment the item is taken until its result) and per
 * worker (`Slot`: its fiber and the attempt it runs), and how each starts out.
 */
import type { Effect, Fiber } from "effect"
import type * as Budget from "../Budget.js"
import type { Permit } from "../CircuitBreaker.js"
import type { TaskError } from "../Errors.js"
import type * as RetryPolicy from "../RetryPolicy.js"

/** One input item as the pool tracks it, from the moment it is taken until its result. */
export interface Unit<I> {
  readonly index: number
  readonly item: I
  readonly id: string | undefined
  /** Runs of the task (admitted by the breaker): the attempt number it is told. */
  attempts: number
  /** Calls made through `AttemptContext.guard` that went out (past their budget and breaker). */
  guardedCalls: number
  /** Whether the task asked for `guard` in any of its runs: then its calls are its guarded calls. */
  usesGuard: boolean
  /** Tries including those the breaker turned away; bounded by maxRetries + 1. */
  tries: number
  firstStart: number
  lastError: TaskError | undefined
  finalized: boolean
  /** Made at the first retry: most items never need one. */
  retryState: RetryPolicy.RetryState | undefined
}

/** One worker fiber and the attempt it runs. */
export interface Slot<I> {
  fiber: Fiber.RuntimeFiber<void, unknown> | undefined
  /** The unit this worker holds, from the moment it takes it until its attempt is accounted for. */
  unit: Unit<I> | undefined
  inAttempt: boolean
  attemptStart: number
  attemptDeadline: number
  timedOut: boolean
  permit: Permit | undefined
  /** Counted in `inFlight`: the attempt is calling, not waiting for admission. */
  calling: boolean
  /** The budget that admitted the attempt's last call, whose cooldown a rate-limited retry waits out. */
  budget: Budget.Budget | undefined
  /** While waiting for admission inside the task: the attempt's time left (its clock is paused); -1 otherwise. */
  pausedLeft: number
  /** The attempt was turned back by a drain before its call: its item is left over, not failed. */
  turnedBack: boolean
  /** What the last attempt's handler left to run (see worker.ts), until it has run. */
  rest: Effect.Effect<void> | undefined
}

/** What taking an item in needs of the run (`state.ts`'s `RunState`, named here without importing it). */
interface Intake<I> {
  nextIndex: number
  outstanding: number
  readonly options: { readonly idOf: ((item: I, index: number) => string) | undefined }
}

/** Takes the next input item into the run. */
export const newUnit = <I>(run: Intake<I>, item: I): Unit<I> => {
  const index = run.nextIndex++
  run.outstanding++
  const idOf = run.options.idOf
  return {
    index,
    item,
    id: idOf === undefined ? undefined : idOf(item, index),
    attempts: 0,
    guardedCalls: 0,
    usesGuard: false,
    tries: 0,
    firstStart: -1,
    lastError: undefined,
    finalized: false,
    retryState: undefined
  }
}

export const newSlot = <I>(): Slot<I> => ({
  fiber: undefined,
  unit: undefined,
  inAttempt: false,
  attemptStart: 0,
  attemptDeadline: 0,
  timedOut: false,
  permit: undefined,
  calling: false,
  budget: undefined,
  pausedLeft: -1,
  turnedBack: false,
  rest: undefined
})
