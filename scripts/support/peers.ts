/**
 * The peers the benchmarks measure the service against: the cheapest way Node can make the same
 * upstream calls (undici's request API under p-limit), with no policy, storage or service around it.
 */
import { performance } from "node:perf_hooks"
import pLimit from "p-limit"
import { request } from "undici"

/** The stub upstream's login; the token the interaction calls need. */
export const login = async (upstreamUrl: string) => {
  const response = await fetch(`${upstreamUrl}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "kol101@example.com", password: "pw-101" })
  })
  return ((await response.json()) as { token: string }).token
}

// undici's request API: the cheapest HTTP client in Node, so the peers are not held back by `fetch`.
export const fetchOne = async (upstreamUrl: string, token: string, articleId: string, signal?: AbortSignal) => {
  const response = await request(`${upstreamUrl}/articles/${articleId}/interactions`, {
    headers: { authorization: `Bearer ${token}` },
    ...(signal === undefined ? {} : { signal })
  })
  if (response.statusCode !== 200) throw new Error(`upstream answered ${response.statusCode}`)
  return response.body.json()
}

/**
 * The floor with what the project promises for every call and p-limit alone does not give: a timeout
 * that really stops the call (`AbortSignal.timeout`, passed down to undici, which aborts the request).
 */
export const pLimitUndiciTimeout = async (upstreamUrl: string, articleIds: ReadonlyArray<string>, concurrency: number, timeoutMs: number) => {
  const t0 = performance.now()
  const token = await login(upstreamUrl)
  const limit = pLimit(concurrency)
  await Promise.all(articleIds.map((id) => limit(() => fetchOne(upstreamUrl, token, id, AbortSignal.timeout(timeoutMs)))))
  return performance.now() - t0
}

/** Every article's interactions, `concurrency` at a time; resolves with the wall time in ms. */
export const pLimitUndici = async (upstreamUrl: string, articleIds: ReadonlyArray<string>, concurrency: number) => {
  const t0 = performance.now()
  const token = await login(upstreamUrl)
  const limit = pLimit(concurrency)
  await Promise.all(articleIds.map((id) => limit(() => fetchOne(upstreamUrl, token, id))))
  return performance.now() - t0
}
