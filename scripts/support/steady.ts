/**
 * What the benches share about warming a contender up and configuring it: when a series of
 * measurements has settled (`isSteady`), and the `K=V,K=V` environment their options take (`envOf`).
 */

/**
 * Steady: at least `min` measurements, and the last three within `tolerance` (a fraction) of each
 * other — one flat step can be noise, and V8 goes on optimising a service for several jobs.
 */
export const isSteady = (xs: ReadonlyArray<number>, min: number, tolerance: number): boolean => {
  const last3 = xs.slice(-3)
  return xs.length >= Math.max(min, 3) && Math.max(...last3) <= (1 + tolerance) * Math.min(...last3)
}

/** `K=V,K=V` as an environment (entries without `=` are ignored). */
export const envOf = (spec: string): Record<string, string> =>
  Object.fromEntries(
    spec
      .split(",")
      .filter((kv) => kv.includes("="))
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])
  )
