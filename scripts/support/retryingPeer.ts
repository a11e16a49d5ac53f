/**
 * The plain-Node peer for an upstream that answers 429: p-limit + undici, retrying a 429 after its
 * `Retry-After` — the way such a loop is usually written by hand, sleeping inside the p-limit slot
 * (so a throttled item keeps its slot while it waits). Nothing is shared between two of these loops.
 */
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import pLimit from "p-limit"
import { request } from "undici"

/** One HTTP call as the client saw it (performance.now() ms); status "error" when nothing came back. */
export interface PeerCall {
  readonly start: number
  readonly end: number
  readonly status: number | "error"
}

export interface RetryingPeerOptions {
  /** Full URLs, one per item. */
  readonly urls: ReadonlyArray<string>
  readonly concurrency: number
  /** Retries of a 429 after the first try. */
  readonly maxRetries: number
  /** Used when a 429 names no usable `Retry-After`. */
  readonly defaultRetryAfterMs: number
  readonly onCall: (call: PeerCall) => void
}

export interface PeerOutcome {
  readonly succeeded: number
  readonly failed: number
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms. */
const retryAfterMs = (header: string | ReadonlyArray<string> | undefined, fallback: number): number => {
  const raw = typeof header === "string" ? header.trim() : undefined
  if (raw === undefined || raw === "") return fallback
  if (/^\d+$/.test(raw)) return Number(raw) * 1000
  const at = Date.parse(raw)
  return Number.isNaN(at) ? fallback : Math.max(0, at - Date.now())
}

/** One item: 200 → done; 429 → wait `Retry-After`, try again (up to maxRetries); anything else → failed. */
const fetchItem = async (url: string, options: RetryingPeerOptions): Promise<boolean> => {
  for (let attempt = 0; ; attempt++) {
    const start = performance.now()
    let status: number | "error" = "error"
    let wait = 0
    try {
      const response = await request(url)
      status = response.statusCode
      if (status === 429) wait = retryAfterMs(response.headers["retry-after"], options.defaultRetryAfterMs)
      // Read the whole body either way, so the connection goes back to the pool.
      if (status === 200) await response.body.json()
      else await response.body.dump()
    } catch {
      status = "error"
    }
    options.onCall({ start, end: performance.now(), status })
    if (status === 200) return true
    if (status !== 429 || attempt >= options.maxRetries) return false
    await sleep(wait)
  }
}

/** Every URL through one p-limit of `concurrency`; resolves once all have succeeded or given up. */
export const pLimitRetrying = async (options: RetryingPeerOptions): Promise<PeerOutcome> => {
  const limit = pLimit(options.concurrency)
  const done = await Promise.all(options.urls.map((url) => limit(() => fetchItem(url, options))))
  const succeeded = done.filter((ok) => ok).length
  return { succeeded, failed: done.length - succeeded }
}
