/**
 * Result delivery. A finished item is counted and its result pushed into the outbox; one flusher
 * fiber hands the outbox over in batches as soon as the workers yield. Emitting from each worker
 * cost more than the rest of an item, and a full consumer now stops the workers (at `maxOutbox`)
 * instead of each of them. A worker that dies (timed out, resized away) never takes a finished
 * result with it; whatever is left when the run stops is handed over by the run itself (`handOverRest`).
 *
 * Without observers (the plain `run`) a result is stored synchronously and the outbox stays empty.
 * A stream without observers offers each result to its mailbox at once while the mailbox has room
 * and the outbox is empty (so the order is kept): going through the flusher cost as much again as
 * the rest of an immediate item, mostly in workers parked on a full outbox that the consumer, one
 * fiber among a hundred busy workers, was slow to empty.
 */
import { Effect } from "effect"
import type { ItemResult } from "../ItemResult.js"
import { checkDone, counts, emitEvent, etaMs, park, parkIn, wakeFlusher, type Progress, type RunState, type Unit } from "./state.js"

/** Records the item's one result (a second one for the same unit is ignored). */
export const finalize = <I, A, E>(run: RunState<I, A, E>, unit: Unit<I>, result: ItemResult<A>): void => {
  if (unit.finalized) return
  unit.finalized = true
  run.outstanding--
  run.completed++
  switch (result.status) {
    case "succeeded":
      run.succeeded++
      break
    case "failed":
      run.failed++
      break
    case "cancelled":
      run.cancelled++
      break
    case "skipped":
      run.skipped++
      break
  }
  const collect = run.collect
  if (collect !== undefined) {
    collect(result)
    return
  }
  const offerNow = run.offerNow
  if (offerNow !== undefined && run.outbox.length === 0 && run.inHand.length === 0 && offerNow(result)) return
  run.unemitted++
  run.outbox.push(result)
  if (run.onEvent !== undefined) run.outboxProgress.push({ counts: counts(run), etaMs: etaMs(run) })
  wakeFlusher(run)
}

const handOver = <I, A, E>(
  run: RunState<I, A, E>,
  results: ReadonlyArray<ItemResult<A>>,
  progress: ReadonlyArray<Progress>
): Effect.Effect<void> => {
  const delivered = Effect.suspend(() => run.options.onResults(results))
  if (run.onEvent === undefined) return delivered
  return Effect.zipRight(
    delivered,
    Effect.forEach(
      results,
      (result, i) =>
        emitEvent(run, () => {
          const p = progress[i]
          const base = { _tag: "ItemFinished" as const, runId: run.runId, result, at: run.now(), counts: p?.counts ?? counts(run) }
          return p?.etaMs === undefined ? base : { ...base, etaMs: p.etaMs }
        }),
      { discard: true }
    )
  )
}

/** The flusher fiber: hands the outbox over whenever it is not empty, then lets blocked workers go on. */
export const flusher = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> => {
  const sleep = park((wake) => {
    run.flusherIdle = wake
  })
  const loop: Effect.Effect<void> = Effect.suspend(() => {
    if (run.outbox.length === 0) return Effect.zipRight(sleep, loop)
    run.inHand = run.outbox.splice(0, run.outbox.length)
    run.inHandProgress = run.outboxProgress.splice(0, run.outboxProgress.length)
    return Effect.zipRight(handOver(run, run.inHand, run.inHandProgress), afterBatch)
  })
  const afterBatch = Effect.suspend(() => {
    run.unemitted -= run.inHand.length
    run.inHand = []
    run.inHandProgress = []
    const blocked = run.blockedOnOutbox.splice(0, run.blockedOnOutbox.length)
    for (const resume of blocked) resume()
    checkDone(run)
    return loop
  })
  return loop
}

/** A worker's wait while the outbox is full. */
export const outboxFull = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> => parkIn(run.blockedOnOutbox)

/** Once the run stopped: whatever the flusher had not handed over yet (including a batch it was holding when stopped). */
export const handOverRest = <I, A, E>(run: RunState<I, A, E>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const rest = [...run.inHand, ...run.outbox.splice(0, run.outbox.length)]
    const restProgress = [...run.inHandProgress, ...run.outboxProgress.splice(0, run.outboxProgress.length)]
    run.inHand = []
    run.inHandProgress = []
    return rest.length > 0 ? handOver(run, rest, restProgress) : Effect.void
  })
