/**
 * What routing a job event costs: a plain `Map` lookup + `PubSub.publish` (what `jobs/JobEvents.ts`
 * does) against Effect's `RcMap` (`has`, then `get` in a scope of its own). Answers why JobEvents keeps
 * its own refcounted maps. `npx tsx scripts/events-lookup.ts`
 */
import { Effect, PubSub, RcMap } from "effect"

const N = 200_000
const program = Effect.gen(function* () {
  const hub = yield* PubSub.unbounded<number>()
  const map = new Map<string, PubSub.PubSub<number>>([["job", hub]])
  const rc = yield* RcMap.make({ lookup: (_: string) => Effect.succeed(hub) })
  // keep "job" alive for the whole measurement, as a follower would
  yield* RcMap.get(rc, "job")
  for (let round = 0; round < 3; round++) {
    let t = performance.now()
    for (let i = 0; i < N; i++) {
      yield* Effect.suspend(() => {
        const h = map.get("job")
        return h === undefined ? Effect.void : Effect.asVoid(PubSub.publish(h, i))
      })
    }
    const plain = ((performance.now() - t) * 1000) / N
    t = performance.now()
    for (let i = 0; i < N; i++) {
      yield* Effect.flatMap(RcMap.has(rc, "job"), (has) => has ? Effect.scoped(Effect.flatMap(RcMap.get(rc, "job"), (h) => PubSub.publish(h, i))) : Effect.void)
    }
    const viaRc = ((performance.now() - t) * 1000) / N
    console.log(`round ${round}: Map ${plain.toFixed(2)} µs/event, RcMap ${viaRc.toFixed(2)} µs/event`)
  }
}).pipe(Effect.scoped)
Effect.runPromise(program)
