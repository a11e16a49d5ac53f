/**
 * Storage faults through the real process: the service's data directory is a small tmpfs the test
 * mounts (as root), filled mid-job with a filler file until the disk is full, and freed again by
 * deleting it. While full: `/ready` and new submissions answer 503 with the reason and the job waits;
 * once freed: the job completes with every item, each upstream call made once, and the outage was
 * logged once. Also a restart while the disk is full, a DELETE during the fault, and the data file's
 * lock (an OS lock: a stale pid file does not block, a second live instance is refused).
 *
 * Without root (or without `mount`) the tmpfs tests are skipped, saying why; there is no
 * `max_page_count` fallback, because a page limit does not fail where a full disk does (the COMMIT).
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Schedule } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import * as Service from "./support/service.js"

/** Whether this process can mount a tmpfs (root, `mount` present): tried once on a scratch directory. */
const mountable = (() => {
  if (process.getuid?.() !== 0) return { ok: false, why: "not root" }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pp-mount-probe-"))
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir])
  if (mounted.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true })
    return { ok: false, why: `mount failed: ${mounted.stderr?.toString().trim() ?? mounted.error?.message}` }
  }
  spawnSync("umount", [dir])
  fs.rmSync(dir, { recursive: true, force: true })
  return { ok: true, why: "" }
})()
if (!mountable.ok) console.warn(`storage fault tests skipped: cannot mount a tmpfs (${mountable.why})`)

/**
 * The test disk's size. The space freed after the fault is what the filler took, so the disk must
 * hold the rest of the job's writes: SQLite appends every commit to the WAL and checkpoints it only
 * at ~4 MB (wal_autocheckpoint, 1,000 pages). The 80-item job left a 2.9 MB WAL with the database
 * file still 4 KB; at 3 MB the disk filled a second time after it was freed in about half the runs
 * (once migration 5 added an index on post history, one more page per commit).
 */
const DISK = "8m"

/** A tmpfs of `size` mounted on a fresh directory for the test's scope. */
const tmpfs = (size: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pp-full-"))
      const result = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir])
      if (result.status !== 0) throw new Error(`mount failed: ${result.stderr.toString()}`)
      return dir
    }),
    (dir) =>
      Effect.sync(() => {
        // Lazy: a killed service's files may still be open for a moment.
        spawnSync("umount", ["-l", dir])
        fs.rmSync(dir, { recursive: true, force: true })
      })
  )

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-lock-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a filler file until the filesystem has no space left; returns its path. */
const fillDisk = (dir: string) =>
  Effect.sync(() => {
    const filler = path.join(dir, "filler")
    const fd = fs.openSync(filler, "w")
    const chunk = Buffer.alloc(16 * 1024, 1)
    try {
      for (;;) fs.writeSync(fd, chunk)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error
    }
    // The last partial pages too: the disk is full to the byte.
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(512, 1))
    } catch {
      // ENOSPC
    }
    fs.closeSync(fd)
    return filler
  })

const posts = (n: number) => Array.from({ length: n }, (_, i) => ({ postId: `p${i}`, articleId: `a${i}`, kolSerial: "101" }))

const envFor = (sandboxUrl: string, dataDir: string) => ({
  ...Service.sandboxEnv(sandboxUrl),
  DATA_DIR: dataDir,
  SHUTDOWN_GRACE_PERIOD: "2 seconds",
  STORAGE_PROBE_INTERVAL: "200 millis",
  // Longer than any outage here: results held in memory are never given up, so no item runs twice.
  JOB_STORE_RETRY_WINDOW: "5 minutes"
})

interface Answer {
  readonly status: number
  readonly body: string
}

const request = (url: string, init: RequestInit = {}) =>
  Effect.tryPromise(async (): Promise<Answer> => {
    const response = await fetch(url, init)
    return { status: response.status, body: await response.text() }
  })

const submit = (url: string, items: number) =>
  request(`${url}/api/interactions/fetch-all-interactions`, {
    method: "POST",
    headers: { "content-type": "application/json", prefer: "respond-async" },
    body: JSON.stringify({ posts: posts(items), maxConcurrent: 4 })
  })

interface JobState {
  readonly status: string
  readonly completed: number
  readonly succeeded: number
  readonly cancelled: number
  readonly total: number
}

const jobOf = (url: string, id: string) =>
  request(`${url}/api/jobs/${id}`).pipe(Effect.map((a) => JSON.parse(a.body) as JobState))

/** Polls `probe` every 100 ms until `done` holds, at most `within`. */
const until = <A, E>(probe: Effect.Effect<A, E>, done: (a: A) => boolean, within: Duration.DurationInput) =>
  probe.pipe(
    Effect.filterOrFail(done, () => new Error("not yet")),
    Effect.retry(Schedule.spaced(Duration.millis(100))),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`condition not met within ${Duration.format(Duration.decode(within))}`) })
  )

const interactionCalls = Effect.map(Sandbox.Sandbox, (sandbox) => sandbox.stats).pipe(
  Effect.flatten,
  Effect.map((stats) => stats.routes.interactions.byId)
)

const count = (text: string, needle: string) => text.split(needle).length - 1

const withSandbox = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  self.pipe(Effect.provide(Layer.merge(Sandbox.layer({ seed: 5 }), FetchHttpClient.layer)), Effect.scoped)

describe.skipIf(!mountable.ok)("storage faults (a tmpfs the test fills)", () => {
  it.live(
    "disk full mid-job: /ready and submissions 503 with the reason, the job waits; freed: it completes, every call once, one log line per outage",
    () =>
      withSandbox(
        Effect.gen(function* () {
          const sandbox = yield* Sandbox.Sandbox
          yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 150 } })
          const dir = yield* tmpfs(DISK)
          const service = yield* Service.start(envFor(sandbox.url, dir))
          const accepted = yield* submit(service.url, 80)
          expect(accepted.status).toBe(202)
          const id = (JSON.parse(accepted.body) as { id: string }).id
          yield* until(jobOf(service.url, id), (job) => job.completed >= 8, "20 seconds")

          const filler = yield* fillDisk(dir)
          const ready = yield* until(request(`${service.url}/ready`), (a) => a.status === 503, "15 seconds")
          expect(ready.body).toContain("the disk is full")
          const refused = yield* submit(service.url, 1)
          expect(refused.status).toBe(503)
          expect(refused.body).toContain("storage is failing (the disk is full)")
          // While full the job makes no progress it could not store, and calls nothing new for long.
          const during = yield* jobOf(service.url, id)
          expect(during.status).toBe("running")
          const callsDuring = Object.values(yield* interactionCalls).reduce((a, b) => a + b, 0)
          yield* Effect.sleep(Duration.seconds(2))
          const callsLater = Object.values(yield* interactionCalls).reduce((a, b) => a + b, 0)
          expect(callsLater).toBe(callsDuring)
          expect((yield* request(`${service.url}/ready`)).status).toBe(503)

          yield* Effect.sync(() => fs.rmSync(filler))
          const final = yield* until(jobOf(service.url, id), (job) => job.status === "completed", "40 seconds")
          expect(final.succeeded).toBe(80)
          const calls = yield* interactionCalls
          expect(Object.keys(calls).sort()).toEqual(posts(80).map((p) => p.articleId).sort())
          expect(Object.values(calls).every((n) => n === 1)).toBe(true)
          expect((yield* request(`${service.url}/ready`)).status).toBe(200)
          expect((yield* submit(service.url, 1)).status).toBe(202)
          const output = service.output()
          expect(count(output, "storage is failing"), output).toBe(1)
          expect(count(output, "storage works again"), output).toBe(1)
        })
      ),
    60_000
  )

  it.live(
    "restart while the disk is full: the service starts, answers 503, and the job completes once space returns",
    () =>
      withSandbox(
        Effect.gen(function* () {
          const sandbox = yield* Sandbox.Sandbox
          yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 150 } })
          const dir = yield* tmpfs(DISK)
          const env = envFor(sandbox.url, dir)
          const { id, filler } = yield* Effect.scoped(
            Effect.gen(function* () {
              const first = yield* Service.start(env)
              const accepted = yield* submit(first.url, 60)
              const id = (JSON.parse(accepted.body) as { id: string }).id
              yield* until(jobOf(first.url, id), (job) => job.completed >= 8, "20 seconds")
              const filler = yield* fillDisk(dir)
              yield* until(request(`${first.url}/ready`), (a) => a.status === 503, "15 seconds")
              yield* first.kill("SIGKILL")
              yield* first.exited
              return { id, filler }
            })
          )
          const second = yield* Service.start(env)
          yield* until(request(`${second.url}/ready`), (a) => a.status === 503, "15 seconds")
          expect((yield* jobOf(second.url, id)).status).toBe("running")
          yield* Effect.sync(() => fs.rmSync(filler))
          const final = yield* until(jobOf(second.url, id), (job) => job.status === "completed", "40 seconds")
          expect(final.succeeded).toBe(60)
          const calls = yield* interactionCalls
          expect(Object.keys(calls).sort()).toEqual(posts(60).map((p) => p.articleId).sort())
          // Only what was in flight or held unstored at the kill ran twice (at most a few per worker).
          const total = Object.values(calls).reduce((a, b) => a + b, 0)
          expect(total).toBeLessThanOrEqual(60 + 20)
          expect((yield* request(`${second.url}/ready`)).status).toBe(200)
        })
      ),
    60_000
  )

  it.live(
    "DELETE during the fault is accepted and ends the job once writes work",
    () =>
      withSandbox(
        Effect.gen(function* () {
          const sandbox = yield* Sandbox.Sandbox
          yield* sandbox.setKnobs("interactions", { latency: { kind: "fixed", ms: 200 } })
          const dir = yield* tmpfs(DISK)
          const service = yield* Service.start(envFor(sandbox.url, dir))
          const accepted = yield* submit(service.url, 200)
          const id = (JSON.parse(accepted.body) as { id: string }).id
          yield* until(jobOf(service.url, id), (job) => job.completed >= 5, "20 seconds")
          const filler = yield* fillDisk(dir)
          yield* until(request(`${service.url}/ready`), (a) => a.status === 503, "15 seconds")
          const deleted = yield* request(`${service.url}/api/jobs/${id}`, { method: "DELETE" })
          expect(deleted.status).toBe(200)
          yield* Effect.sleep(Duration.seconds(1))
          yield* Effect.sync(() => fs.rmSync(filler))
          const final = yield* until(jobOf(service.url, id), (job) => job.status === "cancelled", "30 seconds")
          expect(final.completed).toBe(200)
          expect(final.cancelled).toBeGreaterThan(0)
          // Cancelled, not run: far fewer calls than items.
          const total = Object.values(yield* interactionCalls).reduce((a, b) => a + b, 0)
          expect(total).toBeLessThan(100)
        })
      ),
    60_000
  )
})

describe("data file lock", () => {
  it.live(
    "a stale <db>.lock naming a live unrelated process does not block; a second live instance is refused",
    () =>
      withSandbox(
        Effect.gen(function* () {
          const sandbox = yield* Sandbox.Sandbox
          const dir = yield* tempDir
          // A live process that has nothing to do with the service, its pid in the old lock file format.
          const bystander = yield* Effect.acquireRelease(
            Effect.sync(() => spawn("sleep", ["60"], { stdio: "ignore" })),
            (child) => Effect.sync(() => void child.kill("SIGKILL"))
          )
          fs.writeFileSync(path.join(dir, "parallel-processor.db.lock"), String(bystander.pid))
          const first = yield* Service.start(envFor(sandbox.url, dir))
          expect((yield* request(`${first.url}/ready`)).status).toBe(200)

          const second = yield* Effect.flip(Effect.scoped(Service.start(envFor(sandbox.url, dir))))
          expect(second.message).toContain("is in use by process")
          expect(second.message).toContain(String(first.pid))

          // The lock dies with its process: after a SIGKILL the next start takes it at once.
          yield* first.kill("SIGKILL")
          yield* first.exited
          const third = yield* Service.start(envFor(sandbox.url, dir))
          expect((yield* request(`${third.url}/ready`)).status).toBe(200)
        })
      ),
    60_000
  )
})
