/**
 * File order for `vitest run`: the files known to take longest start first, so that with several
 * workers the run is not left waiting on one long file that happened to start last.
 *
 * Vitest's own order uses durations cached from the previous run; a clean clone (CI) has no cache
 * and falls back to file size, which put cluster.test.ts (the longest, ~3.5 min) twelfth. The list
 * below is from a clean-clone run's per-file times; files not in it keep vitest's order after them.
 */
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * Slowest first (seconds in a clean-clone CI on 2 cores, two workers: cluster 261, retention 91,
 * production.start 68, dashboard 50, …). Engine.properties left the list once the watchdog stopped
 * spinning under TestClock (77 s → 10 s).
 */
const SLOW_FIRST: ReadonlyArray<string> = [
  "test/cluster.test.ts",
  "test/retention.test.ts",
  "test/production.start.test.ts",
  "test/dashboard.test.ts",
  "test/storage.faults.test.ts",
  "test/http.integration.test.ts",
  "test/service.restart.test.ts",
  "test/budgets.integration.test.ts",
  "test/http.hardening.test.ts",
  "test/Budget.test.ts"
]

const rank = (spec: TestSpecification): number => {
  const file = spec.moduleId.replace(/\\/g, "/")
  const found = SLOW_FIRST.findIndex((slow) => file.endsWith(`/${slow}`))
  return found === -1 ? SLOW_FIRST.length : found
}

export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const byCache = await super.sort(files)
    // Array.prototype.sort is stable: files of equal rank keep vitest's order.
    return [...byCache].sort((a, b) => rank(a) - rank(b))
  }
}
