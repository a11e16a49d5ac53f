/**
 * File order for `vitest run`: the files known to take longest start first, so that with several
 * workers the run is not left waiting on one long file that happened to start last.
 *
 * Vitest's own order uses durations cached from the previous run; a clean clone (CI) has no cache
 * and falls back to file size, which once put the cluster tests (then one file, ~3.5 min) twelfth. The list
 * below is from a clean-clone run's per-file times; files not in it keep vitest's order after them.
 */
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * Slowest first, with the three cluster files (three service processes apiece) spaced so that one
 * worker tends to run them one after another while the other runs the rest: two cluster files at
 * once would be six instances renewing shard locks on 2 cores. Seconds, from the per-test times of
 * the last clean-clone CI (2 cores, two workers) when the cluster tests were one file: cluster.failover
 * ~90, cluster.limits ~85, cluster.outage ~95, production.start ~67, dashboard ~54, overload.memory
 * ~52, storage.faults ~47; retention ~65 since its 10 s retention (measured at load ~9).
 * Engine.properties left the list once the watchdog stopped spinning under TestClock (77 s → 10 s).
 */
const SLOW_FIRST: ReadonlyArray<string> = [
  "test/cluster.failover.test.ts",
  "test/retention.test.ts",
  "test/production.start.test.ts",
  "test/cluster.limits.test.ts",
  "test/dashboard.test.ts",
  "test/overload.memory.test.ts",
  "test/cluster.outage.test.ts",
  "test/storage.faults.test.ts",
  "test/http.integration.test.ts",
  "test/service.restart.test.ts",
  "test/budgets.integration.test.ts",
  "test/http.hardening.test.ts",
  "test/overload.admission.test.ts",
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
