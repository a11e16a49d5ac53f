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

/**
 * CPU of a process's threads (µs), from `/proc/<pid>/task/<tid>/stat`: `main` (the JavaScript
 * thread) and `helpers` (every other thread: V8's parallel/concurrent GC and background compilers,
 * libuv's pool — node 20 leaves them all named "node", so they are not told apart). A profile samples
 * the main thread only: work on the helpers (a bigger heap to mark) shows here and not in a profile.
 */
export const threadCpuUs = (pid: number | undefined): Record<string, number> | undefined => {
  if (pid === undefined) return undefined
  let tids: ReadonlyArray<string>
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return undefined
  }
  const groups: Record<string, number> = { main: 0, helpers: 0 }
  for (const tid of tids) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
    } catch {
      continue
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const group = tid === String(pid) ? "main" : "helpers"
    groups[group] = (groups[group] ?? 0) + (Number(fields[11]) + Number(fields[12])) * TICK_US
  }
  return groups
}
