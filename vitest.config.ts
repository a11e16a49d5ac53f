import { defineConfig } from "vitest/config"
import SlowFirstSequencer from "./test/support/sequencer.js"

const shared = { testTimeout: 60_000, hookTimeout: 60_000 }

/**
 * Files that start no service in this process and read no metric: they run in a worker that keeps
 * its module cache from one file to the next (`isolate: false`). Loading effect, @effect/platform and
 * the src modules again for each file cost these 22 files 53 s of CPU in all ("collect"), 13 s
 * without. A file that reads the global metric registry, captures bodies in a module-level list or
 * runs the service in process stays isolated: another file's counters or bodies would be in its view.
 */
const unit = [
  "test/classify.test.ts",
  "test/contract.imports.test.ts",
  "test/coordination.store.test.ts",
  "test/http.framing.test.ts",
  "test/http.starting.test.ts",
  "test/JobEvents.test.ts",
  "test/JobNotifications.test.ts",
  "test/JobShare.test.ts",
  "test/jobstore.migrations.test.ts",
  "test/jobstore.paging.test.ts",
  "test/jobstore.rows.test.ts",
  "test/JobWorkflows.untilStored.test.ts",
  "test/logging.test.ts",
  "test/PartLocks.test.ts",
  "test/PartRun.test.ts",
  "test/postgres.smoke.test.ts",
  "test/quickstart.test.ts",
  "test/RunRegistry.test.ts",
  "test/sandbox.test.ts",
  "test/Shutdown.test.ts",
  "test/Topology.test.ts",
  "test/tracing.test.ts",
  "test/undici.client.test.ts"
]

export default defineConfig({
  test: {
    // Vitest's default is (cores − 1) workers: ONE on a 2-core machine, so the files ran one after
    // another (820 s in CI). Two at a time, not three: the suite needs ~900 CPU-seconds (spawned
    // services, PostgreSQL, imports), so a third file adds little on 2 cores, and three at once
    // under other load failed timing-sensitive tests (cluster shard locks, latency bounds).
    maxWorkers: 2,
    minWorkers: 1,
    sequence: { sequencer: SlowFirstSequencer },
    projects: [
      { test: { ...shared, name: "suite", include: ["test/**/*.test.ts"], exclude: ["test/overload.test.ts", ...unit], sequence: { groupOrder: 0 } } },
      { test: { ...shared, name: "unit", include: unit, isolate: false, sequence: { groupOrder: 0 } } },
      // The burst measures a real process's latency: it runs after the rest, alone, so neither it nor
      // the other files' timing assertions see the other's CPU. Admission and memory count rather than
      // time (overload.admission/overload.memory), so they run in "suite", beside the other files.
      { test: { ...shared, name: "load", include: ["test/overload.test.ts"], sequence: { groupOrder: 1 } } }
    ]
  }
})
