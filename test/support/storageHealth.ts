/**
 * A `StorageHealth` for unit tests of what reports to it: storage always works (no outage, nothing
 * refused, nothing to wait for), and the failures reported are kept for the test to look at.
 */
import { Effect, Option, Stream } from "effect"
import { StorageHealth } from "../../src/jobs/StorageHealth.js"

export const workingStorage = () => {
  const reported: Array<unknown> = []
  const health = StorageHealth.make({
    failed: (_source, error) => Effect.sync(() => void reported.push(error)),
    succeeded: () => Effect.void,
    release: () => Effect.void,
    outage: Effect.succeed(Option.none()),
    awaitWorking: Effect.void,
    changes: Stream.make(true),
    refuseWhileFailing: Effect.void
  })
  return { health, reported }
}
