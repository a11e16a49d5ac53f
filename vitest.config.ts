import { defineConfig } from "vitest/config"
import SlowFirstSequencer from "./test/support/sequencer.js"

const shared = { testTimeout: 60_000, hookTimeout: 60_000 }

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
      { test: { ...shared, name: "suite", include: ["test/**/*.test.ts"], exclude: ["test/overload.test.ts"], sequence: { groupOrder: 0 } } },
      // The burst measures a real process's latency: it runs after the rest, alone, so neither it nor
      // the other files' timing assertions see the other's CPU. Admission and memory count rather than
      // time (overload.admission/overload.memory), so they run in "suite", beside the other files.
      { test: { ...shared, name: "load", include: ["test/overload.test.ts"], sequence: { groupOrder: 1 } } }
    ]
  }
})
