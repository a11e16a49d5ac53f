/**
 * The sandbox's randomness: a seeded PRNG (every draw reproducible from the seed), one stream per
 * id, small sampling helpers, and the latency distribution (log-normal with an optional slow tail).
 */

/** A PRNG returning floats in [0, 1). Stateful: each call advances it. */
export type Prng = () => number

/**
 * mulberry32: tiny, fast, and good enough for simulation. Not `Math.random` because runs must be
 * reproducible from a seed.
 */
export const mulberry32 = (seed: number): Prng => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** FNV-1a over the UTF-16 code units, mixed with the seed, so each id gets its own stream. */
export const hashString = (text: string, seed: number): number => {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** A PRNG dedicated to one id (article, trigger key, query, prompt) under one sandbox seed. */
export const prngFor = (id: string, seed: number): Prng => mulberry32(hashString(id, seed))

/** An integer in [min, max], both inclusive. */
export const intBetween = (rng: Prng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1))

export const between = (rng: Prng, min: number, max: number): number => min + rng() * (max - min)

export const pick = <A>(rng: Prng, items: readonly [A, ...Array<A>]): A =>
  items[Math.floor(rng() * items.length)] ?? items[0]

export const round = (value: number, decimals: number): number => {
  const factor = 10 ** decimals
  return Math.round(value * factor) / factor
}

/**
 * One latency draw from a log-normal around `medianMs` (Box–Muller for the normal), with an
 * optional tail: with `tailProbability` the request takes `tailMs` instead — the rare very slow
 * call that timeouts and hedging exist for.
 */
export const lognormalMs = (
  rng: Prng,
  options: {
    readonly medianMs: number
    readonly sigma: number
    readonly tailProbability?: number
    readonly tailMs?: number
  }
): number => {
  const tailProbability = options.tailProbability ?? 0
  if (tailProbability > 0 && rng() < tailProbability) return options.tailMs ?? options.medianMs * 20
  // 1 - rng() is in (0, 1], so the log is finite.
  const z = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng())
  return Math.max(0, options.medianMs * Math.exp(options.sigma * z))
}
