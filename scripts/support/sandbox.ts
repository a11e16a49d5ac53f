/**
 * The sandbox upstream for a benchmark, in this process or in a child process of its own, behind one
 * small interface: its URL, its knobs and one route's load counters. A child keeps the sandbox's
 * timers off the event loop being measured (its 50 ms sleeps are not stretched by the client's work,
 * and the client's are not stretched by the server's); in-process needs no build and starts at once.
 */
import path from "node:path"
import { Context, Effect, Layer, Schema, type Scope } from "effect"
import * as Sandbox from "../../src/sandbox/Sandbox.js"
import { root, startProcess, stop } from "./processes.js"

export const placements = ["child", "in-process"] as const
export type Placement = (typeof placements)[number]

/** What a benchmark reads of one route: calls, calls in flight, the peak, the ones turned away. */
export interface RouteLoad {
  readonly calls: number
  readonly inFlight: number
  readonly peakInFlight: number
  readonly rejectedOverCapacity: number
}

export interface SandboxControl {
  readonly url: string
  readonly placement: Placement
  readonly setKnobs: (route: Sandbox.RouteName, patch: Sandbox.RouteKnobsPatch) => Effect.Effect<void>
  readonly load: (route: Sandbox.RouteName) => Effect.Effect<RouteLoad>
  /** Zeroes the stats (the peak starts again from the calls in flight); knobs stay. */
  readonly reset: Effect.Effect<void>
}

const RouteLoadSchema = Schema.Struct({
  calls: Schema.Number,
  inFlight: Schema.Number,
  peakInFlight: Schema.Number,
  rejectedOverCapacity: Schema.Number
})
// Only the counters: `byId` and the other routes are ignored (excess properties are dropped).
const StatsSchema = Schema.Struct({ routes: Schema.Record({ key: Schema.String, value: RouteLoadSchema }) })
const decodeStats = Schema.decodeUnknown(StatsSchema)

/** The sandbox as a layer in this process (`Sandbox.layer`), seen through `SandboxControl`. */
export const inProcess = (seed: number): Effect.Effect<SandboxControl, never, Scope.Scope> =>
  Effect.map(Layer.build(Sandbox.layer({ host: "127.0.0.1", port: 0, seed })), (context) => {
    const sandbox = Context.get(context, Sandbox.Sandbox)
    return {
      url: sandbox.url,
      placement: "in-process",
      setKnobs: sandbox.setKnobs,
      load: (route) => Effect.map(sandbox.stats, (s) => s.routes[route]),
      reset: sandbox.reset
    }
  })

/** A bench cannot go on without its upstream: a failed control call is a defect. */
const control = (url: string, init: RequestInit = {}): Effect.Effect<unknown> =>
  Effect.promise(async (signal) => {
    const response = await fetch(url, { ...init, signal })
    const body: unknown = await response.json()
    if (!response.ok) throw new Error(`sandbox ${init.method ?? "GET"} ${url} answered ${response.status}: ${JSON.stringify(body)}`)
    return body
  })

/**
 * The compiled sandbox (`dist/src/sandbox/main.js`, so `npm run build` first) in a child process on a
 * free port, controlled over its HTTP control routes; stopped when the scope closes.
 */
export const childProcess = (seed: number): Effect.Effect<SandboxControl, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(() =>
        startProcess(
          [path.join(root, "dist/src/sandbox/main.js")],
          { SANDBOX_HOST: "127.0.0.1", SANDBOX_PORT: "0", SANDBOX_SEED: String(seed) },
          /listening on (http:\/\/[\d.]+:\d+)/
        )
      ),
      ({ child }) => Effect.promise(() => stop(child))
    ),
    ({ match: url }): SandboxControl => ({
      url,
      placement: "child",
      setKnobs: (route, patch) =>
        Effect.asVoid(
          control(`${url}/__knobs/${route}`, {
            method: "PUT",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(patch)
          })
        ),
      load: (route) =>
        control(`${url}/__stats`).pipe(
          Effect.flatMap(decodeStats),
          Effect.orDie,
          Effect.flatMap((stats) => {
            const load = stats.routes[route]
            return load === undefined ? Effect.dieMessage(`sandbox stats have no route ${route}`) : Effect.succeed(load)
          })
        ),
      reset: Effect.asVoid(control(`${url}/__reset`, { method: "POST" }))
    })
  )

export const start = (placement: Placement, seed: number): Effect.Effect<SandboxControl, never, Scope.Scope> =>
  placement === "child" ? childProcess(seed) : inProcess(seed)
