/**
 * How a run stops. A drain (`RunControl.drain`) stops taking units and calls, lets the calls in
 * flight finish and stops the run once none is calling or its grace period is over. Once the run
 * stopped (its fibers are gone), `settle` gives the items still without a result theirs — a
 * deadline's or a cancel's, including the items never taken, so every input has exactly one — or,
 * after a drain, lists them as unfinished; then hands the rest of the outbox over and builds the
 * summary.
 */
import { Duration, Effect, Option } from "effect"
import * as Budget from "../Budget.js"
import * as EngineMetrics from "../EngineMetrics.js"
import type { RunSummary, StopReason } from "../Progress.js"
import { finalize, handOverRest } from "./outbox.js"
import { stoppedResult } from "./results.js"
import type { Source } from "./source.js"
import { counts, newUnit, stop, wakeAll, type RunState, type Unit } from "./state.js"

/** Nothing new starts; the run stops once no attempt is calling, or after the grace period (forked in the run's scope). */
export const beginDrain = <I, A, E>(run: RunState<I, A, E>, grace: Duration.Duration): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (run.stopReason !== undefined) return Effect.void
    run.draining = true
    wakeAll(run)
    if (run.inFlight === 0) {
      stop(run, "drained")
      return Effect.void
    }
    // Waiters for admission leave the budgets' queues at once: they will never call.
    return Effect.zipRight(
      Budget.stop(run.tenant),
      Effect.zipRight(Effect.sleep(grace), Effect.sync(() => stop(run, "drained")))
    )
  })

/** After the run's fibers are gone: the items without a result, the rest of the outbox, the summary. */
export const settle = <I, A, E, RS>(
  run: RunState<I, A, E>,
  source: Source<I, E, RS>,
  reason: StopReason
): Effect.Effect<RunSummary, E, RS> =>
  Effect.gen(function* () {
    const noTags = EngineMetrics.noExtraTags
    // Every call ended with the run's fibers; a count left over is taken off the shared gauge.
    if (run.inFlight !== 0) run.metrics.inFlight.unsafeModify(-run.inFlight, noTags)
    run.inFlight = 0
    run.waiting = 0
    let unfinished: Array<number> | undefined = undefined
    if (reason === "drained") {
      unfinished = [...run.left, ...run.ready, ...run.waitingUnits].map((unit) => unit.index)
      // An iterable is read to its end to name the items never taken (nothing is called for them).
      const pullSync = source.pullSync
      if (pullSync !== undefined) {
        for (let next = pullSync(); next.done !== true; next = pullSync()) unfinished.push(run.nextIndex++)
      }
      unfinished.sort((a, b) => a - b)
    } else if (reason !== "completed") {
      const at = run.now()
      const orphans: Array<Unit<I>> = [...run.left, ...run.ready, ...run.waitingUnits]
      run.ready.length = 0
      run.left.length = 0
      run.waitingUnits.clear()
      for (const unit of orphans) finalize(run, unit, stoppedResult(unit, reason, at))
      // Items never started end the same way, so every input has exactly one result.
      let more = true
      while (more) {
        const next = yield* source.pull
        if (Option.isNone(next)) more = false
        else {
          const unit = newUnit(run, next.value)
          finalize(run, unit, stoppedResult(unit, reason, at))
        }
      }
    }
    yield* handOverRest(run)

    const { metrics, succeeded, failed, cancelled, skipped } = run
    metrics.itemStatus("succeeded").unsafeUpdate(succeeded, noTags)
    metrics.itemStatus("failed").unsafeUpdate(failed, noTags)
    metrics.itemStatus("cancelled").unsafeUpdate(cancelled, noTags)
    metrics.itemStatus("skipped").unsafeUpdate(skipped, noTags)
    const summary: RunSummary = {
      runId: run.runId,
      ...counts(run),
      inFlight: 0,
      waiting: 0,
      durationMs: run.now() - run.startedAt,
      stoppedBy: reason,
      ...(unfinished === undefined ? {} : { unfinished })
    }
    yield* Effect.logDebug("run finished").pipe(
      Effect.annotateLogs({ stoppedBy: reason, succeeded, failed, cancelled, skipped, durationMs: summary.durationMs })
    )
    return summary
  })
