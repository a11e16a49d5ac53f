/**
 * One synchronous interactions batch posted to a running service, as the cluster benches post it:
 * `items` posts named after `run`, answered with every item succeeded or the bench stops. Shared by
 * `bench-cluster.ts` and `spans-per-item.ts`.
 */
import { performance } from "node:perf_hooks"
import { Schema } from "effect"

const JobAnswer = Schema.Struct({ succeeded: Schema.optional(Schema.Number) })
const decodeJobAnswer = Schema.decodeUnknownSync(JobAnswer)

/** Posts the batch and waits for the answer; resolves to its wall time in ms (also printed, unless `print` is false). */
export const interactionsJob = async (
  url: string,
  run: string,
  items: number,
  maxConcurrent: number,
  timeoutMs = 180_000,
  print = true
): Promise<number> => {
  const posts = Array.from({ length: items }, (_, i) => ({ postId: `${run}-p${i}`, articleId: `${run}-a${i}`, kolSerial: "101" }))
  const t0 = performance.now()
  const response = await fetch(`${url}/api/interactions/fetch-all-interactions`, {
    signal: AbortSignal.timeout(timeoutMs),
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ posts, maxConcurrent })
  })
  const raw: unknown = await response.json()
  const body = decodeJobAnswer(raw)
  if (response.status !== 200 || body.succeeded !== items) throw new Error(`HTTP ${response.status}: ${JSON.stringify(raw).slice(0, 300)}`)
  const wall = performance.now() - t0
  if (print) console.log(`  ${run}: ${items} items in ${Math.round(wall)} ms`)
  return wall
}
