/**
 * A job's share on a real store (SQLite in a temporary directory): the parts of one job running in
 * this instance get the same share, so their results go through one writer (one commit for what
 * finishes together, whichever part it came from), the inputs are read once and one cancel poll
 * reaches every part; the job's limit is split over the parts running here; the last part to let go
 * ends it, and the next run makes a new one.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Schedule, Scope } from "effect"
import * as RunControl from "../src/engine/RunControl.js"
import * as JobEvents from "../src/jobs/JobEvents.js"
import { JobStore } from "../src/jobs/JobStore.js"
import * as JobShare from "../src/jobs/runner/JobShare.js"
import * as SingleProcess from "../src/jobs/topology/SingleProcess.js"
import { withSqliteStore } from "./support/sqliteStore.js"
import { workingStorage } from "./support/storageHealth.js"


const succeeded = (index: number) => ({ result: { index, status: "succeeded" as const, attempts: 1, durationMs: 0, value: index }, effect: undefined })

describe("JobShare", () => {
  // Live: the writer's commit interval and the cancel poll are real sleeps (a few ms).
  it.live("two parts share one writer, one read of the inputs and one cancel poll, and split the job's limit; the last to let go ends it", () =>
    withSqliteStore(
      Effect.gen(function* () {
        const real = yield* JobStore
        const calls = { saves: [] as Array<ReadonlyArray<number>>, inputs: 0, cancelPolls: 0 }
        const store: JobStore = {
          ...real,
          saveItems: (jobId, batch, at) =>
            Effect.suspend(() => {
              calls.saves.push(batch.map((w) => w.result.index))
              return real.saveItems(jobId, batch, at)
            }),
          inputsOf: (id) => Effect.suspend(() => (calls.inputs++, real.inputsOf(id))),
          cancelRequested: (id) => Effect.suspend(() => (calls.cancelPolls++, real.cancelRequested(id)))
        }
        const shares = yield* JobShare.make({
          store,
          health: workingStorage().health,
          topology: yield* SingleProcess.make,
          events: yield* JobEvents.make,
          cancelPoll: Duration.millis(20),
          commitInterval: Duration.millis(1),
          writeRetry: Schedule.recurs(0)
        })
        yield* real.createJob({
          id: "job-1",
          kind: "intraday-triggers",
          inputs: Array.from({ length: 4 }, (_, i) => ({ triggerKey: `t${i}` })),
          options: {},
          idempotencyKey: undefined,
          requestHash: undefined,
          createdAt: Date.now()
        })

        const partScopes = [yield* Scope.make(), yield* Scope.make()] as const
        const [zero, one] = yield* Effect.forEach(partScopes, (scope) => Scope.extend(shares.get("job-1"), scope))
        expect(zero).toBe(one)
        if (zero === undefined) return expect.unreachable()
        expect(zero.inputs).toHaveLength(4)
        expect(calls.inputs).toBe(1)
        const members = yield* Effect.forEach(partScopes, (scope, part) =>
          Effect.flatMap(RunControl.make, (control) =>
            Scope.extend(zero.attach(part, control, 5), scope).pipe(Effect.map((member) => ({ control, member })))
          )
        )
        const controls = members.map((m) => m.control)
        // The job's limit of 5, split over the two parts running here.
        expect(yield* Effect.forEach(members, (m) => m.member.maxConcurrent.get)).toEqual([3, 3])

        // Part 0 finishes items 0 and 2, part 1 items 1 and 3, together: one commit.
        yield* Effect.forEach([0, 1, 2, 3], (i) => zero.offer(succeeded(i), undefined))
        yield* zero.flush
        expect(calls.saves).toEqual([[0, 1, 2, 3]])
        expect((yield* real.items("job-1")).map((i) => i.index).sort()).toEqual([0, 1, 2, 3])
        expect([...zero.results.keys()].sort()).toEqual([0, 1, 2, 3])

        // A cancel stored by another instance reaches both parts, through one poll loop.
        const pollsBefore = calls.cancelPolls
        yield* real.requestCancel("job-1")
        yield* Effect.forEach(controls, (control) => Deferred.await(control.cancelled))
        yield* Effect.sleep(Duration.millis(100))
        // One loop every 20 ms: ~5 reads in 100 ms, where a loop per part would make ~10.
        expect(calls.cancelPolls - pollsBefore).toBeLessThanOrEqual(8)

        // Part 0 lets go: the share stays for part 1; part 1 lets go: it ends, and the next run makes a new one.
        yield* Scope.close(partScopes[0], Exit.void)
        const again = yield* Scope.extend(shares.get("job-1"), partScopes[1])
        expect(again).toBe(zero)
        // The part left running gets the whole limit.
        expect(yield* members[1]!.member.maxConcurrent.get).toBe(5)
        yield* Scope.close(partScopes[1], Exit.void)
        const fresh = yield* shares.get("job-1")
        expect(fresh).not.toBe(zero)
        expect(calls.inputs).toBe(2)
      })
    ).pipe(Effect.scoped)
  )
})
