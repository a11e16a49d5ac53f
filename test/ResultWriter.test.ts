/**
 * The result writer alone, under the TestClock: results that finish together share one batch, a
 * batch whose save fails is retried (not dropped) and stored once, `end` stores what is queued and
 * ends cleanly, and a writer whose saves fail for the whole retry window gives up with the error.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, TestClock } from "effect"
import { StoreError } from "../src/jobs/JobStore.js"
import * as ResultWriter from "../src/jobs/runner/ResultWriter.js"

const settle = Effect.yieldNow().pipe(Effect.repeatN(20))

/** A store that records each batch, failing the first `failures` saves. */
const recording = (failures: number) => {
  const state = { batches: [] as Array<ReadonlyArray<number>>, attempts: 0, stored: [] as Array<number>, reports: [] as Array<string> }
  const save = (batch: ReadonlyArray<number>) =>
    Effect.suspend(() => {
      state.attempts++
      if (state.attempts <= failures) return Effect.fail(new StoreError({ message: "disk full", cause: undefined }))
      state.batches.push(batch)
      return Effect.succeed(batch)
    })
  const options: ResultWriter.Options<number, number> = {
    save,
    onStored: (stored) => Effect.sync(() => void state.stored.push(...stored)),
    commitInterval: Duration.millis(5),
    retry: ResultWriter.retryWithin(Duration.seconds(10)),
    reports: {
      failed: () => Effect.sync(() => void state.reports.push("failed")),
      succeeded: Effect.sync(() => void state.reports.push("succeeded")),
      release: Effect.sync(() => void state.reports.push("release"))
    },
    annotations: { job: "j" }
  }
  return { state, options }
}

describe("ResultWriter", () => {
  it.scoped("results offered within one commit interval are stored in one batch; end stores the rest and ends", () =>
    Effect.gen(function* () {
      const { state, options } = recording(0)
      const writer = yield* ResultWriter.make(options)
      yield* Effect.forEach([0, 1, 2], writer.offer)
      yield* settle
      expect(state.batches).toEqual([[0, 1, 2]])
      // The writer sleeps for the commit interval: what finishes meanwhile waits for the next batch.
      yield* Effect.forEach([3, 4], writer.offer)
      yield* settle
      expect(state.batches).toHaveLength(1)
      yield* TestClock.adjust(Duration.millis(5))
      yield* settle
      expect(state.batches).toEqual([[0, 1, 2], [3, 4]])
      yield* writer.offer(5)
      const ended = yield* Effect.fork(writer.end)
      yield* TestClock.adjust(Duration.millis(10))
      yield* Fiber.join(ended)
      expect(state.stored).toEqual([0, 1, 2, 3, 4, 5])
    })
  )

  it.scoped("a failing save is retried and the batch stored once; the failure is reported, then the success", () =>
    Effect.gen(function* () {
      const { state, options } = recording(3)
      const writer = yield* ResultWriter.make(options)
      yield* Effect.forEach([0, 1], writer.offer)
      yield* settle
      expect(state.stored).toEqual([])
      yield* TestClock.adjust(Duration.seconds(2))
      yield* settle
      expect(state.attempts).toBe(4)
      expect(state.batches).toEqual([[0, 1]])
      expect(state.stored).toEqual([0, 1])
      expect(state.reports.filter((r) => r === "failed")).toHaveLength(3)
      expect(state.reports).toContain("succeeded")
      const ended = yield* Effect.fork(writer.end)
      yield* TestClock.adjust(Duration.millis(5))
      yield* Fiber.join(ended)
      // Ended with nothing left: the failure it had reported is released.
      expect(state.reports[state.reports.length - 1]).toBe("release")
    })
  )

  it.scoped("saves that fail for the whole retry window: the writer gives up, end fails with the error", () =>
    Effect.gen(function* () {
      const { state, options } = recording(Number.POSITIVE_INFINITY)
      const writer = yield* ResultWriter.make(options)
      const gaveUp = yield* Effect.fork(writer.gaveUp)
      yield* writer.offer(0)
      yield* TestClock.adjust(Duration.seconds(30))
      yield* settle
      yield* Fiber.join(gaveUp)
      const error = yield* Effect.flip(writer.end)
      expect(error.message).toBe("disk full")
      expect(state.stored).toEqual([])
      expect(state.reports).toContain("release")
    })
  )

  it.scoped("flush waits for what was offered before it and the writer goes on; after giving up it fails", () =>
    Effect.gen(function* () {
      const { state, options } = recording(0)
      const writer = yield* ResultWriter.make(options)
      // Nothing offered: nothing to wait for.
      yield* writer.flush
      yield* Effect.forEach([0, 1], writer.offer)
      yield* settle
      // The first batch went at once; the writer sleeps its interval, so 2 waits for the next batch.
      yield* writer.offer(2)
      const flushed = yield* Effect.fork(writer.flush)
      yield* settle
      yield* writer.offer(3)
      expect(flushed.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.millis(5))
      yield* settle
      yield* Fiber.join(flushed)
      expect(state.stored).toEqual([0, 1, 2, 3])
      // Still writing after a flush.
      yield* writer.offer(4)
      yield* TestClock.adjust(Duration.millis(5))
      yield* settle
      expect(state.stored).toEqual([0, 1, 2, 3, 4])

      const failing = recording(Number.POSITIVE_INFINITY)
      const broken = yield* ResultWriter.make(failing.options)
      yield* broken.offer(0)
      const waiting = yield* Effect.fork(Effect.flip(broken.flush))
      yield* TestClock.adjust(Duration.seconds(30))
      yield* settle
      expect((yield* Fiber.join(waiting)).message).toBe("disk full")
      expect((yield* Effect.flip(broken.flush)).message).toBe("disk full")
    })
  )
})
