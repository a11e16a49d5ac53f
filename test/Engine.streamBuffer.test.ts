/**
 * The bound on what `Engine.stream` takes from an input that never ends while its consumer takes 20
 * results: what the consumer's pull took (at most a full buffer, of which it keeps 20), a full
 * buffer again (one turn of every worker, `YIELD_EVERY` results each), the outbox (`maxOutbox`, 4 per
 * worker and at least 64) and one item per worker. Memory is bounded by concurrency, not input.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { Engine } from "../src/index.js"
import { YIELD_EVERY } from "../src/engine/internal/worker.js"

/** An endless iterable counting the items taken from it. */
const endless = () => {
  const taken = { count: 0 }
  const items: Iterable<number> = {
    [Symbol.iterator]: () => ({ next: () => ({ done: false, value: taken.count++ }) })
  }
  return { taken, items }
}

describe("Engine.stream over an endless iterable", () => {
  for (const maxConcurrent of [4, 100]) {
    it.effect(`takes at most two buffers + outbox + workers items for a consumer of 20 (maxConcurrent ${maxConcurrent})`, () =>
      Effect.gen(function* () {
        const { taken, items } = endless()
        const out = yield* Engine.stream(items, (i: number) => Effect.succeed(i), { maxConcurrent }).pipe(
          Stream.take(20),
          Stream.runCollect
        )
        expect(Chunk.size(out)).toBe(20)
        const bound = 2 * YIELD_EVERY * maxConcurrent + Math.max(64, 4 * maxConcurrent) + maxConcurrent
        expect(taken.count).toBeGreaterThanOrEqual(20)
        expect(taken.count).toBeLessThanOrEqual(bound)
      }))
  }
})
