/**
 * The sandbox's live stats per route — calls, in flight, peak in flight, client aborts, over-capacity
 * rejections, calls per id — as counted while serving and as `/__stats` shows them.
 */
import { HashMap, Option } from "effect"
import { perRoute, type RouteName } from "./Knobs.js"

export interface RouteStats {
  readonly calls: number
  readonly inFlight: number
  readonly peakInFlight: number
  /** Requests whose client closed the connection before we answered. */
  readonly aborted: number
  /** Calls answered 429/503 at once because `capacity` calls were in flight (also in `calls`). */
  readonly rejectedOverCapacity: number
  /** Calls per id: articleId, triggerKey, news query, chat model, login email. */
  readonly byId: Readonly<Record<string, number>>
}

export interface SandboxStats {
  readonly routes: Readonly<Record<RouteName, RouteStats>>
  readonly totalPeakInFlight: number
  /** Successful logins (tokens issued) per email. */
  readonly logins: Readonly<Record<string, number>>
}

// Persistent maps rather than records: a benchmark may hit tens of thousands of distinct ids and
// copying a record on every call would be quadratic.
export interface RouteCounters {
  readonly calls: number
  readonly inFlight: number
  readonly peakInFlight: number
  readonly aborted: number
  readonly rejectedOverCapacity: number
  readonly byId: HashMap.HashMap<string, number>
}

export interface Counters {
  readonly routes: Record<RouteName, RouteCounters>
  readonly totalInFlight: number
  readonly totalPeakInFlight: number
  readonly logins: HashMap.HashMap<string, number>
}

export const freshRoute = (inFlight: number): RouteCounters => ({
  calls: 0,
  inFlight,
  peakInFlight: inFlight,
  aborted: 0,
  rejectedOverCapacity: 0,
  byId: HashMap.empty()
})

export const emptyCounters: Counters = {
  routes: perRoute(() => freshRoute(0)),
  totalInFlight: 0,
  totalPeakInFlight: 0,
  logins: HashMap.empty()
}

/** Zeroed counters, except requests still in flight: they will finish and must not go negative. */
export const resetCounters = (current: Counters): Counters => ({
  routes: perRoute((route) => freshRoute(current.routes[route].inFlight)),
  totalInFlight: current.totalInFlight,
  totalPeakInFlight: current.totalInFlight,
  logins: HashMap.empty()
})

export const increment = (map: HashMap.HashMap<string, number>, key: string) =>
  HashMap.modifyAt(map, key, (n) => Option.some(Option.getOrElse(n, () => 0) + 1))

export const toRecord = (map: HashMap.HashMap<string, number>): Record<string, number> => Object.fromEntries(map)

export const snapshot = (counters: Counters): SandboxStats => ({
  routes: perRoute((route) => {
    const r = counters.routes[route]
    return { ...r, byId: toRecord(r.byId) }
  }),
  totalPeakInFlight: counters.totalPeakInFlight,
  logins: toRecord(counters.logins)
})
