/**
 * A scripted upstream for engine tests: each (item, attempt) gets a latency and an outcome, and the
 * harness records every call, the peak number of calls in flight, interruptions and aborts.
 */
import { Clock, Duration, Effect, Fiber, TestClock } from "effect"
import {
  InvalidResponse,
  Permanent,
  RateLimited,
  Skipped,
  Transient,
  type TaskError
} from "../../src/index.js"
import type { AttemptContext } from "../../src/engine/Engine.js"

export type Outcome =
  | "ok"
  | "transient"
  | "permanent"
  | "rate_limited"
  | "invalid"
  | "hang"
  | "skip"
  | "defect"

export interface Step {
  readonly latencyMs: number
  readonly outcome: Outcome
  readonly retryAfterMs?: number
}

export interface Call {
  readonly index: number
  readonly attempt: number
  readonly at: number
}

export interface Harness {
  readonly task: (item: number, ctx: AttemptContext) => Effect.Effect<number, TaskError>
  readonly calls: Array<Call>
  readonly state: { inFlight: number; peak: number; interrupted: number; aborted: number; finished: number }
}

const errorFor = (step: Step, index: number): TaskError | undefined => {
  switch (step.outcome) {
    case "transient":
      return new Transient({ message: `upstream 503 for item ${index}`, status: 503 })
    case "permanent":
      return new Permanent({ message: `upstream 404 for item ${index}`, status: 404 })
    case "rate_limited":
      return step.retryAfterMs === undefined
        ? new RateLimited({ message: "429" })
        : new RateLimited({ message: "429", retryAfter: Duration.millis(step.retryAfterMs) })
    case "invalid":
      return new InvalidResponse({ message: "body failed its schema" })
    case "skip":
      return new Skipped({ reason: "account on the skip list" })
    default:
      return undefined
  }
}

export const makeHarness = (script: (index: number, attempt: number) => Step): Harness => {
  const calls: Array<Call> = []
  const state = { inFlight: 0, peak: 0, interrupted: 0, aborted: 0, finished: 0 }
  const task = (item: number, ctx: AttemptContext): Effect.Effect<number, TaskError> =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      state.inFlight++
      state.peak = Math.max(state.peak, state.inFlight)
      calls.push({ index: ctx.index, attempt: ctx.attempt, at })
      const step = script(ctx.index, ctx.attempt)
      const wait = step.latencyMs > 0 ? Effect.sleep(Duration.millis(step.latencyMs)) : Effect.void
      const body: Effect.Effect<number, TaskError> =
        step.outcome === "hang"
          ? // Like a fetch that never answers: only the abort signal ends it.
            Effect.async<number, TaskError>((_resume, signal) => {
              signal.addEventListener("abort", () => {
                state.aborted++
              })
            })
          : step.outcome === "defect"
            ? Effect.zipRight(wait, Effect.dieMessage("bug in the task"))
            : Effect.flatMap(wait, () => {
                const error = errorFor(step, ctx.index)
                return error === undefined ? Effect.succeed(item * 10) : Effect.fail(error)
              })
      return body.pipe(
        Effect.tap(() => Effect.sync(() => state.finished++)),
        Effect.onInterrupt(() => Effect.sync(() => state.interrupted++)),
        Effect.ensuring(Effect.sync(() => state.inFlight--))
      )
    })
  return { task, calls, state }
}

export const ok = (latencyMs: number): Step => ({ latencyMs, outcome: "ok" })

/** Runs `self` to completion under the TestClock, advancing virtual time as far as needed. */
export const runVirtual = <A, E, R>(self: Effect.Effect<A, E, R>, horizon: Duration.DurationInput = "2 hours") =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(self)
    yield* TestClock.adjust(horizon)
    return yield* Fiber.join(fiber)
  })

export const attemptsOf = (calls: ReadonlyArray<Call>, index: number) => calls.filter((c) => c.index === index)
