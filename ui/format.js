// @ts-check
/** How numbers, times and durations read on the page. */

/** @param {number | undefined} ms */
export const duration = (ms) => {
  if (ms === undefined || !Number.isFinite(ms)) return "—"
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

/** A countdown such as "3.2 s" (contract: the upstream cooldown cell). @param {number} ms */
export const countdown = (ms) => `${(Math.max(0, ms) / 1000).toFixed(1)} s`

/** @param {string | undefined} iso */
export const time = (iso) => {
  if (iso === undefined) return "—"
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return "—"
  const today = new Date().toDateString() === date.toDateString()
  return today ? date.toLocaleTimeString() : date.toLocaleString()
}

/** @param {number} completed @param {number} total */
export const percent = (completed, total) => (total <= 0 ? 0 : Math.min(100, Math.floor((completed / total) * 100)))

/** @param {number} n */
export const rate = (n) => (n >= 10 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2))

/** A job id short enough for a table, still unique in practice. @param {string} id */
export const shortId = (id) => id.slice(0, 8)

/** The API's job kinds and the names the forms and filters use (processor names). */
export const kinds = /** @type {const} */ ([
  { name: "interactions", kind: "interactions", label: "Interactions" },
  { name: "post_generation", kind: "post-generation", label: "Post generation" },
  { name: "intraday_triggers", kind: "intraday-triggers", label: "Intraday triggers" }
])
