/**
 * The sandbox's per-route fault knobs: latency (fixed or lognormal with a tail), injected errors,
 * 429s with each Retry-After flavour, hangs, malformed bodies, dropped connections, and a capacity
 * with what happens above it — their types, the schemas `/__knobs` decodes, and how patches apply.
 */
import { Schema, Struct } from "effect"

export const routeNames = ["login", "interactions", "chat", "screen", "news"] as const
export type RouteName = (typeof routeNames)[number]

export type Latency =
  | { readonly kind: "fixed"; readonly ms: number }
  | {
      readonly kind: "lognormal"
      readonly medianMs: number
      readonly sigma: number
      readonly tailProbability?: number
      readonly tailMs?: number
    }

export type RetryAfter =
  | { readonly kind: "seconds"; readonly seconds: number }
  | { readonly kind: "http-date"; readonly seconds: number }
  | { readonly kind: "reset-header"; readonly seconds: number }
  | { readonly kind: "none" }

export interface RouteKnobs {
  readonly latency: Latency
  /** 0..1 → answer `errorStatus` (default 503) `{ "error": "upstream unavailable" }`. */
  readonly errorRate: number
  readonly errorStatus?: number
  /** 0..1 → 429 with the `retryAfter` headers. */
  readonly rateLimitRate: number
  readonly retryAfter: RetryAfter
  /** 0..1 → never answer; the socket stays open until the client gives up. */
  readonly hangRate: number
  /** 0..1 → 200 with valid JSON that breaks the route's schema. */
  readonly malformedRate: number
  /** 0..1 → destroy the socket without answering (connection reset). */
  readonly dropRate: number
  /** `login` only: how long an issued token stays valid (default 3600). */
  readonly tokenTtlSeconds?: number
  /**
   * How many calls of this route are served at once (an integer ≥ 1). Absent: unlimited. Checked
   * when a call arrives, against the calls already in flight; lowering it at run time lets the
   * calls in flight finish and turns new ones away until they have.
   */
  readonly capacity?: number
  /**
   * What a call that arrives while `capacity` calls are in flight gets (default "429"): "429" or
   * "503" at once — no latency, no other fault — with the `retryAfter` headers; "queue" is served
   * like any other, slowed down by `kneeFactor`. Ignored without a `capacity`.
   */
  readonly overCapacity?: OverCapacity
  /**
   * The latency knee (≥ 0, default 0 = none): a call's sampled latency is multiplied by
   * `max(1, 1 + kneeFactor × (inFlight / capacity − 1))`, with `inFlight` the calls in flight once
   * this one is admitted (itself included), fixed at admission. With `kneeFactor` 1 that is
   * `max(1, inFlight / capacity)`: on a capacity of 8, the 16th call in flight takes twice the
   * latency. Only "queue" lets `inFlight` exceed `capacity`, so only "queue" ever sees the knee;
   * ignored without a `capacity`.
   */
  readonly kneeFactor?: number
}

export type OverCapacity = "429" | "503" | "queue"

/** What `setKnobs` and `PUT /__knobs/{route}` take: any subset of RouteKnobs; `capacity: null` removes the limit. */
export type RouteKnobsPatch = Omit<Partial<RouteKnobs>, "capacity"> & { readonly capacity?: number | null }

export const healthyKnobs: RouteKnobs = {
  latency: { kind: "fixed", ms: 0 },
  errorRate: 0,
  rateLimitRate: 0,
  retryAfter: { kind: "seconds", seconds: 1 },
  hangRate: 0,
  malformedRate: 0,
  dropRate: 0
}

export const defaultTokenTtlSeconds = 3600

const Rate = Schema.Number.pipe(Schema.between(0, 1))
const Millis = Schema.Number.pipe(Schema.nonNegative())
const Seconds = Schema.Number.pipe(Schema.nonNegative())
export const exact = { exact: true } as const

const LatencySchema: Schema.Schema<Latency> = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("fixed"), ms: Millis }),
  Schema.Struct({
    kind: Schema.Literal("lognormal"),
    medianMs: Millis,
    sigma: Schema.Number.pipe(Schema.nonNegative()),
    tailProbability: Schema.optionalWith(Rate, exact),
    tailMs: Schema.optionalWith(Millis, exact)
  })
)

const RetryAfterSchema: Schema.Schema<RetryAfter> = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("seconds", "http-date", "reset-header"), seconds: Seconds }),
  Schema.Struct({ kind: Schema.Literal("none") })
)

// One message per field instead of one per union member ("Expected null, actual -1; …").
const CapacityPatch = Schema.NullOr(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))).annotations({
  message: () => ({ message: "Expected an integer ≥ 1, or null for no limit", override: true })
})

const OverCapacitySchema: Schema.Schema<OverCapacity> = Schema.Literal("429", "503", "queue").annotations({
  message: () => ({ message: 'Expected "429", "503" or "queue"', override: true })
})

/** A partial RouteKnobs as sent to `PUT /__knobs/{route}`. */
export const KnobsPatch: Schema.Schema<RouteKnobsPatch> = Schema.Struct({
  latency: Schema.optionalWith(LatencySchema, exact),
  errorRate: Schema.optionalWith(Rate, exact),
  errorStatus: Schema.optionalWith(Schema.Int.pipe(Schema.between(100, 599)), exact),
  rateLimitRate: Schema.optionalWith(Rate, exact),
  retryAfter: Schema.optionalWith(RetryAfterSchema, exact),
  hangRate: Schema.optionalWith(Rate, exact),
  malformedRate: Schema.optionalWith(Rate, exact),
  dropRate: Schema.optionalWith(Rate, exact),
  tokenTtlSeconds: Schema.optionalWith(Seconds, exact),
  capacity: Schema.optionalWith(CapacityPatch, exact),
  overCapacity: Schema.optionalWith(OverCapacitySchema, exact),
  kneeFactor: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), exact)
})

export type KnobsPatches = Partial<Record<RouteName, RouteKnobsPatch>>

/** The body of `PUT /__knobs`: patches for several routes at once. */
export const KnobsPatches: Schema.Schema<KnobsPatches> = Schema.Struct({
  login: Schema.optionalWith(KnobsPatch, exact),
  interactions: Schema.optionalWith(KnobsPatch, exact),
  chat: Schema.optionalWith(KnobsPatch, exact),
  screen: Schema.optionalWith(KnobsPatch, exact),
  news: Schema.optionalWith(KnobsPatch, exact)
})

export const RouteNameSchema = Schema.Literal(...routeNames)

export const perRoute = <A>(f: (route: RouteName) => A): Record<RouteName, A> => ({
  login: f("login"),
  interactions: f("interactions"),
  chat: f("chat"),
  screen: f("screen"),
  news: f("news")
})

const applyPatch = (current: RouteKnobs, { capacity, ...rest }: RouteKnobsPatch): RouteKnobs => {
  const next = { ...current, ...rest }
  if (capacity === undefined) return next
  return capacity === null ? Struct.omit(next, "capacity") : { ...next, capacity }
}

export const applyPatches = (
  current: Record<RouteName, RouteKnobs>,
  patches: KnobsPatches | undefined
): Record<RouteName, RouteKnobs> => {
  const next = { ...current }
  for (const route of routeNames) {
    const patch = patches?.[route]
    if (patch !== undefined) next[route] = applyPatch(current[route], patch)
  }
  return next
}

/** Whether a call arriving with `inFlight` calls already in flight is turned away. */
export const overCapacity = (k: RouteKnobs, inFlight: number): boolean =>
  k.capacity !== undefined && k.overCapacity !== "queue" && inFlight >= k.capacity

/** `max(1, 1 + kneeFactor × (inFlight / capacity − 1))`, `inFlight` including the call itself. */
export const kneeMultiplier = (k: RouteKnobs, inFlight: number): number =>
  k.capacity === undefined || k.kneeFactor === undefined || k.kneeFactor === 0
    ? 1
    : Math.max(1, 1 + k.kneeFactor * (inFlight / k.capacity - 1))
