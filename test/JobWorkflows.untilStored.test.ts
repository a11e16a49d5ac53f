/**
 * An activity's body kept alive over storage failures (`untilStored`): a failing read or write waits
 * for storage and runs again, but a stored row that no longer decodes ends the job failed, with a
 * logged reason, instead of being retried forever (and without being taken for a storage outage).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, ParseResult, Schema, TestClock } from "effect"
import { untilStored } from "../src/jobs/JobWorkflows.js"
import { StoreError } from "../src/jobs/JobStore.js"
import { undecodableItemRow } from "../src/jobs/store/JobTable.js"
import { workingStorage } from "./support/storageHealth.js"

const parseError = Schema.decodeUnknownEither(Schema.Struct({ total: Schema.Number }))({ total: "many" })

describe("untilStored", () => {
  it.effect("a row that no longer decodes ends the body failed at once, not retried, not an outage", () =>
    Effect.gen(function* () {
      const { health, reported } = workingStorage()
      if (parseError._tag !== "Left") return expect.unreachable()
      const cause: ParseResult.ParseError = parseError.left
      let attempts = 0
      const read = Effect.suspend(() => {
        attempts++
        return Effect.fail(new StoreError({ message: "database: reading a job failed", cause }))
      })
      const fiber = yield* Effect.fork(untilStored(read, health, "job-1"))
      yield* TestClock.adjust(Duration.minutes(5))
      // Ended by now (a retried body would still be waiting out its backoff).
      const exit = yield* Fiber.poll(fiber)
      expect(Option.isSome(exit)).toBe(true)
      if (Option.isNone(exit) || !Exit.isFailure(exit.value)) return expect.unreachable()
      const error = exit.value.cause._tag === "Fail" ? exit.value.cause.error : undefined
      expect(error?._tag).toBe("UndecodableJob")
      expect(error?.message).toContain("no longer decodes")
      expect(attempts).toBe(1)
      expect(reported).toEqual([])
    })
  )

  it.effect("an item row that does not decode (the store's own check) ends it too", () =>
    Effect.gen(function* () {
      const { health } = workingStorage()
      const read = Effect.fail(undecodableItemRow({ idx: "x" }, "not an item result row"))
      const fiber = yield* Effect.fork(untilStored(read, health, "job-2"))
      yield* TestClock.adjust(Duration.minutes(5))
      const exit = yield* Fiber.poll(fiber)
      expect(Option.isSome(exit) && Exit.isFailure(exit.value)).toBe(true)
    })
  )

  it.effect("a storage failure is reported and waited out, then the body runs again", () =>
    Effect.gen(function* () {
      const { health, reported } = workingStorage()
      let attempts = 0
      const write = Effect.suspend(() => {
        attempts++
        return attempts < 3 ? Effect.fail(new StoreError({ message: "database: saving item results failed", cause: "SQLITE_FULL" })) : Effect.succeed("stored")
      })
      const fiber = yield* Effect.fork(untilStored(write, health, "job-3"))
      yield* TestClock.adjust(Duration.seconds(10))
      expect(yield* Fiber.join(fiber)).toBe("stored")
      expect(attempts).toBe(3)
      expect(reported.length).toBe(2)
    })
  )
})
