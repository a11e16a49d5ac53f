import { defineConfig } from "vitest/config"

const shared = { testTimeout: 60_000, hookTimeout: 60_000 }

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: "suite", include: ["test/**/*.test.ts"], exclude: ["test/overload.test.ts"], sequence: { groupOrder: 0 } } },
      // Load tests measure latency and memory of a real process under a burst: they run after the
      // rest, alone, so neither they nor the other files' timing assertions see the other's CPU.
      { test: { ...shared, name: "load", include: ["test/overload.test.ts"], sequence: { groupOrder: 1 } } }
    ]
  }
})
