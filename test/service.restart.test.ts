/**
 * Durability through the real process: the service is spawned, killed mid-job (SIGKILL, and SIGTERM
 * for a graceful stop) and started again on the same data directory. The sandbox runs in the test
 * process, so its call counts span both service processes and show which items ran twice.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Client from "../src/http/Client.js"
import type { JobDetail } from "../src/jobs/Model.js"
import { retryOverloaded, waitForJob } from "./support/requests.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import * as Service from "./support/service.js"

const posts = Array.from({ length: 12 }, (_, i) => ({ postId: `p${i}`, articleId: `a${i}`, kolSerial: "101" }))

const envFor = (sandboxUrl: string, dataDir: string) => ({
  ...Service.sandboxEnv(sandboxUrl),
  DATA_DIR: dataDir,
  SHUTDOWN_GRACE_PERIOD: "5 seconds"
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-restart-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Polls the job through `url` until `done` holds (at most 60 s: a loaded 2-core machine). */
const waitFor = (url: string, id: string, done: (job: JobDetail) => boolean) => waitForJob(url, id, done, "60 seconds")

const submit = (url: string) =>
  Effect.gen(function* () {
    const client = yield* Client.make(url)
    const accepted = yield* retryOverloaded(
      client.batches.fetchAllInteractions({
        payload: { posts, maxConcurrent: 3 },
        headers: { prefer: "respond-async" }
      })
    )
    return accepted.id
  })

const run = (signal: "SIGKILL" | "SIGTERM") =>
  Effect.gen(function* () {
    const sandbox = yield* Sandbox.Sandbox
    // Slow enough that the signal (sent once 4 items are stored) comes with 8 left, ≥ 1.5 s of work.
    yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 500 } })
    const dataDir = yield* tempDir
    const env = envFor(sandbox.url, dataDir)

    const first = yield* Effect.scoped(
      Effect.gen(function* () {
        const service = yield* Service.start(env)
        const id = yield* submit(service.url)
        const partial = yield* waitFor(service.url, id, (job) => job.completed >= 4)
        yield* service.kill(signal)
        const exit = yield* service.exited.pipe(Effect.timeout(Duration.seconds(30)))
        return { id, partial, exit, output: service.output() }
      })
    )
    const callsAtStop = (yield* sandbox.stats).routes.interactions.byId
    const afterStop = yield* Effect.scoped(
      Effect.gen(function* () {
        const service = yield* Service.start(env)
        return yield* waitFor(service.url, first.id, (job) => job.status === "completed")
      })
    )
    const calls = (yield* sandbox.stats).routes.interactions.byId
    return { ...first, callsAtStop, final: afterStop, calls }
  }).pipe(Effect.provide(Layer.merge(Sandbox.layer({ seed: 3 }), FetchHttpClient.layer)), Effect.scoped)

describe("service restart", () => {
  it.live(
    "SIGKILL mid-job: the job resumes on restart, finished items are not re-run, nothing is lost",
    () =>
      Effect.gen(function* () {
        const { partial, exit, final, calls, callsAtStop } = yield* run("SIGKILL")
        expect(exit).toBe("SIGKILL")
        expect(final.results).toHaveLength(12)
        expect(final.results.every((r) => r.status === "succeeded")).toBe(true)
        expect(final.results.map((r) => r.index)).toEqual(posts.map((_, i) => i))
        // Items stored before the kill kept their results and were never called again.
        for (const done of partial.results) {
          expect(calls[`a${done.index}`]).toBe(1)
          expect(final.results[done.index]).toEqual(done)
        }
        // Ran twice: only items called before the kill whose results were not stored yet — the 3 in
        // flight, and results finished within the last group commit (README: a crash loses at most one
        // commit interval of finished results), at most one per worker. Never a third time.
        const stored = new Set(partial.results.map((r) => `a${r.index}`))
        const twice = Object.entries(calls).filter(([, n]) => n > 1)
        for (const [item, n] of twice) {
          expect(n, item).toBe(2)
          expect(callsAtStop[item], item).toBe(1)
          expect(stored.has(item), item).toBe(false)
        }
        expect(twice.length).toBeLessThanOrEqual(3 + 3)
        expect(Object.keys(calls)).toHaveLength(12)
      }),
    180_000
  )

  it.live(
    "SIGTERM mid-job: in-flight attempts finish, the process exits 0, the rest runs after restart, nothing twice",
    () =>
      Effect.gen(function* () {
        const { exit, final, calls, callsAtStop, output } = yield* run("SIGTERM")
        expect(exit, output).toBe(0)
        expect(final.results).toHaveLength(12)
        expect(final.results.every((r) => r.status === "succeeded")).toBe(true)
        // Graceful: every article was called exactly once across both processes.
        expect(Object.keys(calls).sort()).toEqual(posts.map((p) => p.articleId).sort())
        expect(Object.values(calls).every((n) => n === 1)).toBe(true)
        // …and the first process had stopped before finishing.
        expect(Object.keys(callsAtStop).length).toBeLessThan(12)
      }),
    180_000
  )
})
