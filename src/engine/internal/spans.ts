/**
 * Item and attempt spans, made only when the program installed a tracer that records them (e.g.
 * `@effect/opentelemetry`'s). With Effect's built-in tracer, which exports nothing, a span per item
 * and per attempt would be pure cost on the hot path (README, "Per-item cost"): whether a run traces
 * is decided once, when its first worker starts, and without tracing the workers run the attempt
 * exactly as before — not one effect more per item.
 *
 * The tree: the span current where the run was started (a job's span) → `engine.item` (from the
 * item's first attempt to its result, across workers and retry waits) → `engine.attempt` (one per
 * try) → the task's own spans (an upstream client's, its HTTP request's). An item span is made by
 * hand rather than with `withSpan`, as no single fiber runs an item from start to end.
 */
import { Cause, type Clock, Context, DefaultServices, Effect, Exit, FiberRef, Option, Scope, Tracer } from "effect"
import { errorTypeOf, type TaskError } from "../Errors.js"
import * as RetryPolicy from "../RetryPolicy.js"
import type { Attempt } from "./attempt.js"
import type { RunState, Slot, Unit } from "./state.js"

const builtInTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/** What one run's workers share: the open item spans. */
export interface RunSpans {
  readonly runId: string
  readonly clock: Clock.Clock
  readonly items: Map<Unit<unknown>, Tracer.Span>
}

const byRun = new WeakMap<object, RunSpans | null>()

/**
 * The run's spans, or `undefined` when nothing records them: Effect's built-in tracer, or tracing
 * switched off (`Effect.withTracerEnabled(false)`). Asked once per worker started, decided once per run.
 */
export const forRun = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<RunSpans | undefined> =>
  Effect.suspend(() => {
    const known = byRun.get(run)
    if (known !== undefined) return Effect.succeed(known ?? undefined)
    return Effect.flatMap(
      Effect.all([Effect.tracer, Effect.clock, FiberRef.get(FiberRef.currentTracerEnabled)]),
      ([tracer, clock, enabled]): Effect.Effect<RunSpans | undefined> => {
        if (!enabled || tracer === builtInTracer) {
          byRun.set(run, null)
          return Effect.succeed(undefined)
        }
        const spans: RunSpans = { runId: run.runId, clock, items: new Map() }
        byRun.set(run, spans)
        // Items without a result when the run ends (left by a drain, waiting for a retry when it
        // stopped: their results are settled after this) still end their span, so it is exported.
        const endOpen = Effect.sync(() => {
          const now = clock.unsafeCurrentTimeNanos()
          for (const [unit, span] of spans.items) {
            span.attribute("item.outcome", "unfinished")
            span.attribute("item.tries", unit.tries)
            span.end(now, Exit.void)
          }
          spans.items.clear()
        })
        return Effect.as(Scope.addFinalizer(run.scope, endOpen), spans)
      }
    )
  })

/** Ends the item's span once its result is known (the attempt just accounted for gave it one). */
const endItem = (spans: RunSpans, unit: Unit<unknown>, exit: Exit.Exit<unknown, TaskError>, error: TaskError | undefined, now: bigint): void => {
  if (!unit.finalized) return
  const span = spans.items.get(unit)
  if (span === undefined) return
  spans.items.delete(unit)
  span.attribute("item.tries", unit.tries)
  if (Exit.isSuccess(exit)) {
    span.attribute("item.outcome", "succeeded")
    span.end(now, Exit.void)
  } else if (error !== undefined) {
    span.attribute("item.outcome", error._tag === "Skipped" ? "skipped" : "failed")
    span.attribute("error.type", error._tag)
    span.attribute("item.error", errorTypeOf(error))
    span.end(now, Exit.fail(error))
  } else if (Cause.isInterruptedOnly(exit.cause)) {
    // Ended by the run's deadline or a cancel while calling.
    span.attribute("item.outcome", "stopped")
    span.end(now, Exit.void)
  } else {
    span.attribute("item.outcome", "failed")
    span.attribute("error.type", "Defect")
    span.end(now, exit)
  }
}

/**
 * The error a failed try ended with: its failure, or the timeout the bookkeeping made of an
 * interruption by the watchdog (`undefined` for a stop, a drain or a defect).
 */
const errorOf = <I>(slot: Slot<I>, unit: Unit<unknown>, cause: Cause.Cause<TaskError>): TaskError | undefined => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return failure.value
  return Cause.isInterruptedOnly(cause) && slot.timedOut ? unit.lastError : undefined
}

/** What the attempt span says of a failed try: the error, its retry class, whether a retry follows. */
const annotateFailure = (span: Tracer.Span, unit: Unit<unknown>, error: TaskError | undefined, cause: Cause.Cause<TaskError>): void => {
  if (error === undefined) {
    span.attribute("error.type", Cause.isInterruptedOnly(cause) ? "Interrupted" : "Defect")
    return
  }
  span.attribute("error.type", error._tag)
  span.attribute("item.error", errorTypeOf(error))
  const cls = RetryPolicy.classOf(error)
  if (cls !== undefined) span.attribute("retry.class", cls)
  if ("status" in error && error.status !== undefined) span.attribute("http.response.status_code", error.status)
  span.attribute("retry.scheduled", !unit.finalized)
}

/**
 * `attempt` with an `engine.attempt` span around each try's call, under the item's span (made at
 * its first try). Only for runs that trace: it costs a few effects per attempt.
 */
export const traced = <I, A, R>(attempt: Attempt<A, R>, spans: RunSpans, slot: Slot<I>): Attempt<A, R> => {
  let span: Tracer.Span | undefined
  let unit: Unit<unknown> | undefined
  const finish = (exit: Exit.Exit<unknown, TaskError>) =>
    Effect.sync(() => {
      const s = span
      const u = unit
      span = undefined
      unit = undefined
      if (s === undefined || u === undefined) return
      const now = spans.clock.unsafeCurrentTimeNanos()
      if (Exit.isSuccess(exit)) {
        s.end(now, exit)
        endItem(spans, u, exit, undefined, now)
        return
      }
      const error = errorOf(slot, u, exit.cause)
      annotateFailure(s, u, error, exit.cause)
      s.end(now, error === undefined ? exit : Exit.fail(error))
      endItem(spans, u, exit, error, now)
    })
  const itemSpan = (u: Unit<unknown>): Effect.Effect<Tracer.Span> => {
    const open = spans.items.get(u)
    if (open !== undefined) return Effect.succeed(open)
    return Effect.map(
      Effect.makeSpan("engine.item", {
        kind: "internal",
        captureStackTrace: false,
        attributes: { "run.id": spans.runId, "item.index": u.index, ...(u.id === undefined ? {} : { "item.id": u.id }) }
      }),
      (made) => {
        spans.items.set(u, made)
        return made
      }
    )
  }
  return {
    begin: () => {
      const u = slot.unit
      const call = attempt.begin()
      if (u === undefined) return call
      return Effect.flatMap(itemSpan(u), (parent) =>
        Effect.flatMap(
          Effect.makeSpan("engine.attempt", {
            kind: "internal",
            parent,
            captureStackTrace: false,
            attributes: {
              "run.id": spans.runId,
              "item.index": u.index,
              // `tries` counts the try that begins now: attempt 1 is the first, with no retry before it.
              "attempt.number": u.tries,
              "retry.count": u.tries - 1
            }
          }),
          (made) => {
            span = made
            unit = u
            return Effect.withParentSpan(call, made)
          }
        )
      )
    },
    onSuccess: (value) => Effect.zipRight(attempt.onSuccess(value), finish(Exit.succeed(value))),
    onFailure: (cause) => Effect.zipRight(attempt.onFailure(cause), finish(Exit.failCause(cause)))
  }
}
