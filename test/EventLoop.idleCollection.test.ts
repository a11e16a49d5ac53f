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
    const { sample } = idleCollection({ quietSeconds: 2, longQuietSeconds: 10, minGarbageBytes: 0 })
    expect([0.01, 0.01, 0.5, 0.01, 0.01, 0.01, 0.01].map((u) => sample(u, 0))).toEqual([undefined, undefined, undefined, undefined, "burst", undefined, undefined])
    // Work again: one more collection after it.
    expect([0.9, 0.02, 0.02].map((u) => sample(u, 0))).toEqual([undefined, undefined, "burst"])
  })

  const MB = 1024 * 1024

  it("collects soon only when the heap holds a burst's garbage above what the last collection left live", () => {
    const collection = idleCollection({ quietSeconds: 1, longQuietSeconds: 10, minGarbageBytes: 256 * MB }, 25 * MB)
    const spell = (heapUsed: number) => [0.5, 0.01].map((u) => collection.sample(u, heapUsed))
    // After ordinary jobs: 91 and 230 MB in use, 25 MB at start — not a burst's worth.
    expect(spell(91 * MB)).toEqual([undefined, undefined])
    expect(spell(230 * MB)).toEqual([undefined, undefined])
    // After a burst: 427 MB in use.
    expect(spell(427 * MB)).toEqual([undefined, "burst"])
    collection.collected(98 * MB)
    // Measured from what that collection left live (98 MB), not from the start.
    expect(spell(300 * MB)).toEqual([undefined, undefined])
    expect(spell(360 * MB)).toEqual([undefined, "burst"])
  })

  it("collects whatever work left once the pause is long, once per pause, and a second of work starts the count again", () => {
    const collection = idleCollection({ quietSeconds: 2, longQuietSeconds: 5, minGarbageBytes: 256 * MB }, 25 * MB)
    const quiet = (n: number) => Array.from({ length: n }, () => collection.sample(0.01, 120 * MB))
    // Quiet before any work: nothing to give back.
    expect(quiet(8)).toEqual(Array(8).fill(undefined))
    expect(collection.sample(0.6, 120 * MB)).toBeUndefined()
    // 4 quiet seconds, then half-busy ones (between 5 and 20 %) count neither way, then a fifth quiet one.
    expect(quiet(4)).toEqual(Array(4).fill(undefined))
    expect(collection.sample(0.1, 120 * MB)).toBeUndefined()
    expect(quiet(1)).toEqual(["idle"])
    expect(quiet(10)).toEqual(Array(10).fill(undefined))
    // Work interrupts a pause: the count starts again after it.
    expect(collection.sample(0.6, 120 * MB)).toBeUndefined()
    expect(quiet(3)).toEqual(Array(3).fill(undefined))
    expect(collection.sample(0.6, 120 * MB)).toBeUndefined()
    expect(quiet(5)).toEqual([undefined, undefined, undefined, undefined, "idle"])
  })

  it("a second with a job running here is work, however quiet the loop (slow upstream calls)", () => {
    const collection = idleCollection({ quietSeconds: 2, longQuietSeconds: 4, minGarbageBytes: 256 * MB }, 25 * MB)
    // A job waiting on slow calls: the loop idles, but nothing is collected under it, burst or not.
    const waiting = Array.from({ length: 10 }, () => collection.sample(0.01, 500 * MB, true))
    expect(waiting).toEqual(Array(10).fill(undefined))
    // It ends: the quiet count starts then.
    expect([0.01, 0.01].map((u) => collection.sample(u, 500 * MB, false))).toEqual([undefined, "burst"])
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
          longQuietSeconds: 1,
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

  it.live(
    "the monitor asks whether work runs here: no collection under a quiet loop while it does, one after",
    () =>
      Effect.gen(function* () {
        let collections = 0
        let working = true
        yield* monitorWith({
          collect: () => {
            collections++
          },
          quietSeconds: 1,
          longQuietSeconds: 1,
          minGarbageBytes: 0,
          working: Effect.sync(() => working)
        })
        // A job waiting on slow calls: the loop is quiet, the job runs.
        yield* Effect.sleep("3500 millis")
        expect(collections).toBe(0)
        working = false
        yield* Effect.sleep("2500 millis")
        expect(collections).toBe(1)
      }).pipe(Effect.scoped),
    20_000
  )
})
