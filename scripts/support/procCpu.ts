/**
 * CPU time another process has used (user + system, µs), read from Linux's `/proc/<pid>/stat`: how
 * `bench:ledger` charges the stub upstream and the service child their share of a step, and how
 * `bench:cluster` charges each instance, the stub and PostgreSQL (a process tree: the postmaster and
 * one backend per connection). The kernel counts in clock ticks (10 ms at the usual 100 Hz), so a
 * step needs a few hundred ms of a child's CPU for its figure to mean much; elsewhere than Linux it
 * reads `undefined`.
 */
import { readdirSync, readFileSync } from "node:fs"

const TICK_US = 10_000

/** The fields after the command name (field 2, which may hold spaces), or undefined if gone. */
const statFields = (pid: number): ReadonlyArray<string> | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

export const procCpuUs = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  const fields = statFields(pid)
  // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
  return fields === undefined ? undefined : (Number(fields[11]) + Number(fields[12])) * TICK_US
}

/**
 * CPU of `root` and every live descendant, each with the CPU of the children it has already reaped
 * (cutime + cstime): a backend that exits between two readings moves from "live" to its parent's
 * reaped time, so the difference of two readings stays whole.
 */
export const procTreeCpuUs = (root: number | undefined): number | undefined => {
  if (root === undefined) return undefined
  let entries: ReadonlyArray<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return undefined
  }
  const children = new Map<number, Array<number>>()
  const ticks = new Map<number, number>()
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    const fields = statFields(pid)
    if (fields === undefined) continue
    // ppid is field 4 of the whole line (1 after the name); cutime, cstime fields 16 and 17.
    const ppid = Number(fields[1])
    const list = children.get(ppid) ?? []
    list.push(pid)
    children.set(ppid, list)
    ticks.set(pid, Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]))
  }
  if (!ticks.has(root)) return undefined
  let total = 0
  const queue = [root]
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    total += ticks.get(pid) ?? 0
    queue.push(...(children.get(pid) ?? []))
  }
  return total * TICK_US
}
