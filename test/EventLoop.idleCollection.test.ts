/**
 * The event-loop monitor's idle collection runs once when the process falls quiet after work, and
 * its own pause does not count as work: before, the collection's 150-400 ms made the next second
 * "busy", so an idle service collected again every ~6.5 s, forever (two full collections each time,
 * most of an idle instance's CPU; scripts/idle-cost.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { idleCollection, monitorWith } from "../src/http/EventLoop.js"

/** Keeps the event loop busy for `ms` (what a collection or a burst of work does to it). */
const block = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spin
  }
}

describe("EventLoop idle collection", () => {
  it("collects once after busy then quiet seconds, and not again while quiet", () => {
    const { sample } = idleCollection(2)
    expect([0.01, 0.01, 0.5, 0.01, 0.01, 0.01, 0.01].map((u) => sample(u))).toEqual([false, false, false, false, true, false, false])
    // Work again: one more collection after it.
    expect([0.9, 0.02, 0.02].map((u) => sample(u))).toEqual([false, false, true])
  })

  it("collects only when the heap holds enough garbage above what the last collection left live", () => {
    const MB = 1024 * 1024
    const collection = idleCollection(1, 256 * MB, 25 * MB)
    const spell = (heapUsed: number) => [0.5, 0.01].map((u) => collection.sample(u, heapUsed))
    // After ordinary jobs: 91 and 230 MB in use, 25 MB at start — not a burst's worth.
    expect(spell(91 * MB)).toEqual([false, false])
    expect(spell(230 * MB)).toEqual([false, false])
    // After a burst: 427 MB in use.
    expect(spell(427 * MB)).toEqual([false, true])
    collection.collected(98 * MB)
    // Measured from what that collection left live (98 MB), not from the start.
    expect(spell(300 * MB)).toEqual([false, false])
    expect(spell(360 * MB)).toEqual([false, true])
  })

  it.live(
    "a collection that takes a while is not taken for work (no second collection while idle)",
    () =>
      Effect.gen(function* () {
        let collections = 0
        yield* monitorWith({
          collect: () => {
            collections++
            block(400)
          },
          quietSeconds: 1,
          minGarbageBytes: 0
        })
        // The test's own start-up may count as work: let its collection pass first.
        yield* Effect.sleep("3 seconds")
        collections = 0
        // A second of work.
        block(1100)
        // Quiet for long enough for three collections had each one counted as work.
        yield* Effect.sleep("7 seconds")
        expect(collections).toBe(1)
      }).pipe(Effect.scoped),
    20_000
  )
})
