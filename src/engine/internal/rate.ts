/**
 * A budget's optional request rate (`600/minute`): the value, and parsing/formatting it for
 * configuration and the HTTP API. Re-exported by `Budget`.
 */

/** At most `limit` calls started per `perMs`. */
export interface Rate {
  readonly limit: number
  readonly perMs: number
}

const unitMs: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000
}

/** `600/minute`, `10/second`, `5/s`, `100/2 minutes` → a Rate; undefined when it does not parse. */
export const parseRate = (raw: string): Rate | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$/i.exec(raw)
  if (match === null) return undefined
  const limit = Number(match[1])
  const count = match[2] === undefined ? 1 : Number(match[2])
  const word = (match[3] ?? "").toLowerCase()
  const unit = unitMs[word] ?? unitMs[word.replace(/s$/, "")]
  if (unit === undefined || !(limit > 0) || !(count > 0)) return undefined
  return { limit, perMs: count * unit }
}

export const formatRate = (rate: Rate): string => {
  const per = rate.perMs === 1_000 ? "second" : rate.perMs === 60_000 ? "minute" : rate.perMs === 3_600_000 ? "hour" : `${rate.perMs} ms`
  return `${rate.limit}/${per}`
}
