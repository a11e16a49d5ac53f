/**
 * CPU time another process has used (user + system, µs), read from Linux's `/proc/<pid>/stat`: how
 * `bench:ledger` charges the stub upstream and the service child their share of a step. The kernel
 * counts in clock ticks (10 ms at the usual 100 Hz), so a step needs a few hundred ms of a child's
 * CPU for its figure to mean much; elsewhere than Linux it reads `undefined`.
 */
import { readFileSync } from "node:fs"

const TICK_US = 10_000

export const procCpuUs = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    return (Number(fields[11]) + Number(fields[12])) * TICK_US
  } catch {
    return undefined
  }
}
