/**
 * In-process job events: a waiter for a job's end (a sync batch) is told of its `completed` event
 * without subscribing to its item events, counts as following the job while it waits (retention
 * keeps the job), and leaves nothing behind; subscribers still get every event of their job.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Option, Queue, Scope } from "effect"
import * as JobEvents from "../src/jobs/JobEvents.js"
import type { JobEvent, JobView } from "../src/jobs/Model.js"

const view: JobView = {
  id: "j",
  kind: "interactions",
  status: "completed",
  success: true,
  total: 1,
  completed: 1,
  succeeded: 1,
  failed: 0,
  cancelled: 0,
  skipped: 0,
  options: {},
  createdAt: new Date(0).toISOString()
}
const item: JobEvent = { type: "item", jobId: "j", seq: 0, result: { index: 0, status: "succeeded", attempts: 1, durationMs: 1, value: 1 } }
const completed: JobEvent = { type: "completed", jobId: "j", job: view }

describe("JobEvents", () => {
  it.effect("a waiter completes on its job's completed event, follows the job meanwhile, and is no subscriber", () =>
    Effect.gen(function* () {
      const events = yield* JobEvents.make
      const scope = yield* Scope.make()
      const ended = yield* Scope.extend(events.awaitCompleted("j"), scope)
      expect(events.isFollowed("j")).toBe(true)
      expect(events.isSubscribed("j")).toBe(false)
      expect(events.followedJobs()).toEqual(["j"])
      const waiting = yield* Effect.fork(ended)
      yield* events.publish(item)
      yield* events.publish({ ...completed, jobId: "other" })
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* events.publish(completed)
      yield* Fiber.join(waiting)
      yield* Scope.close(scope, Exit.void)
      expect(events.isFollowed("j")).toBe(false)
      expect(events.followed()).toBe(0)
    })
  )

  it.scoped("a subscriber gets every event of its job; with a waiter too, the job counts once", () =>
    Effect.gen(function* () {
      const events = yield* JobEvents.make
      const queue = yield* events.subscribe("j")
      yield* events.awaitCompleted("j")
      expect(events.isSubscribed("j")).toBe(true)
      expect(events.followed()).toBe(1)
      yield* events.publish(item)
      yield* events.publish(completed)
      const got = yield* Queue.takeAll(queue)
      expect(Chunk.toReadonlyArray(got).map((e) => e.type)).toEqual(["item", "completed"])
    })
  )
})
