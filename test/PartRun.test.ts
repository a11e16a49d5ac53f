/**
 * One part run on a real store (SQLite in a temporary directory) with the single-process topology
 * and a kind whose items finish at once: every item is stored and the job ends, and the run's
 * admission scope (what holds the topology's valve) is closed exactly once — by the run's cleanup,
 * not again by the run's own scope.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Schedule, Scope } from "effect"
import * as JobEvents from "../src/jobs/JobEvents.js"
import { JobStore } from "../src/jobs/JobStore.js"
import * as JobEnd from "../src/jobs/runner/JobEnd.js"
import type { JobKindRunner } from "../src/jobs/runner/JobKinds.js"
import * as JobShare from "../src/jobs/runner/JobShare.js"
import * as PartRun from "../src/jobs/runner/PartRun.js"
import * as RunRegistry from "../src/jobs/runner/RunRegistry.js"
import * as Shutdown from "../src/jobs/runner/Shutdown.js"
import { withSqliteStore } from "./support/sqliteStore.js"
import { workingStorage } from "./support/storageHealth.js"
import * as SingleProcess from "../src/jobs/topology/SingleProcess.js"

const { health } = workingStorage()

/** Every item succeeds at once with its index as its value. */
const instant: JobKindRunner = {
  processor: "instant",
  maxConcurrent: Effect.succeed(4),
  run: (inputs, _jobId, options) =>
    Effect.forEach(
      inputs,
      (_, index) =>
        Effect.zipRight(
          Effect.sync(() => options.admission.done(1)),
          options.onFinished({ result: { index, status: "succeeded", attempts: 1, durationMs: 0, value: index }, effect: undefined, etaMs: undefined })
        ),
      { discard: true }
    )
}


describe("PartRun", () => {
  // Live: the result writer's commit interval is a real sleep.
  it.live("stores every item, ends the job, and closes its admission scope once", () =>
    withSqliteStore(
      Effect.gen(function* () {
        const store = yield* JobStore
        const single = yield* SingleProcess.make
        // The scope the run hands the topology's admission, with each close of it counted.
        const closes: Array<Exit.Exit<unknown, unknown>> = []
        const topology = {
          ...single,
          admission: (request: Parameters<typeof single.admission>[0]) =>
            Effect.flatMap(Effect.scope, (scope) => {
              const close: unknown = Reflect.get(scope, "close")
              if (typeof close === "function") {
                Reflect.set(scope, "close", (exit: Exit.Exit<unknown, unknown>) => {
                  closes.push(exit)
                  return Reflect.apply(close, scope, [exit])
                })
              }
              return single.admission(request)
            })
        }
        const registry = yield* RunRegistry.make
        const shutdown = yield* Shutdown.make(registry, Duration.seconds(1))
        const events = yield* JobEvents.make
        const deps: PartRun.PartRunDeps = {
          store,
          health,
          topology,
          registry,
          shutdown,
          kinds: { interactions: instant, "post-generation": instant, "intraday-triggers": instant },
          events,
          jobEnd: JobEnd.make({ store, topology, registry, events }),
          shares: yield* JobShare.make({
            store,
            health,
            topology,
            events,
            cancelPoll: Duration.seconds(1),
            commitInterval: Duration.millis(1),
            writeRetry: Schedule.recurs(0)
          }),
          scope: yield* Scope.make(),
          grace: Duration.seconds(1)
        }
        yield* store.createJob({
          id: "job-1",
          kind: "intraday-triggers",
          inputs: [{ triggerKey: "a" }, { triggerKey: "b" }, { triggerKey: "c" }],
          options: {},
          idempotencyKey: undefined,
          requestHash: undefined,
          createdAt: Date.now()
        })
        const outcome = yield* PartRun.execute(deps, "job-1", { part: 0, parts: 1 }, true)
        expect(outcome).toBe("finished")
        expect((yield* store.items("job-1")).map((i) => i.index).sort()).toEqual([0, 1, 2])
        expect((yield* store.getJob("job-1"))?.status).toBe("completed")
        expect(closes.length).toBe(1)
      })
    ).pipe(Effect.scoped)
  )
})
