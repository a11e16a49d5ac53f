// @ts-check
/**
 * An item's value as people read it, by job kind: a generated post's text, a trigger's stocks and
 * news, an article's interaction counts; anything else as JSON.
 */
import { h } from "preact"
import htm from "htm"

const html = htm.bind(h)

/** @typedef {import("./types.js").JobKind} JobKind */

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
const isRecord = (value) => typeof value === "object" && value !== null && !Array.isArray(value)

/** @param {unknown} value */
const str = (value) => (typeof value === "string" ? value : value === undefined || value === null ? "" : String(value))

/** @param {unknown} value */
const num = (value) => (typeof value === "number" ? value.toLocaleString() : "—")

/** @param {{ value: unknown }} props */
const Json = ({ value }) => html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`

/** @param {{ value: Record<string, unknown> }} props */
const GeneratedPost = ({ value }) => {
  const usage = isRecord(value.usage) ? value.usage : undefined
  return html`
    <div class="post">
      <p class="post-text">${str(value.content)}</p>
      <p class="muted small">Model ${str(value.model) || "—"}${usage === undefined ? "" : ` · ${num(usage.totalTokens)} tokens`}</p>
    </div>
  `
}

/** @param {{ value: Record<string, unknown> }} props */
const Trigger = ({ value }) => {
  const stocks = Array.isArray(value.stocks) ? value.stocks.filter(isRecord) : []
  const news = Array.isArray(value.news) ? value.news.filter(isRecord) : []
  return html`
    <div class="trigger">
      <h3>Stocks (${stocks.length})</h3>
      ${stocks.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<div class="table-wrap"><table class="table compact">
            <thead><tr><th scope="col">Code</th><th scope="col">Name</th><th scope="col" class="num">Price</th>
              <th scope="col" class="num">Change %</th><th scope="col" class="num">Volume</th></tr></thead>
            <tbody>${stocks.map((s, i) => html`<tr key=${i}>
              <td class="mono">${str(s.code)}</td><td>${str(s.name)}</td><td class="num">${num(s.price)}</td>
              <td class=${`num ${typeof s.changePercent === "number" && s.changePercent < 0 ? "bad" : "ok"}`}>${num(s.changePercent)}</td>
              <td class="num">${num(s.volume)}</td></tr>`)}</tbody>
          </table></div>`}
      <h3>News (${news.length})</h3>
      ${news.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<ul class="news">${news.map((n, i) => html`<li key=${i}>
            <a href=${str(n.link)} target="_blank" rel="noopener noreferrer">${str(n.title)}</a>
            <span class="muted small"> ${[str(n.source), str(n.date)].filter((s) => s !== "").join(" · ")}</span>
            ${n.snippet === undefined ? null : html`<div class="small">${str(n.snippet)}</div>`}
          </li>`)}</ul>`}
    </div>
  `
}

/** @param {{ value: Record<string, unknown> }} props */
const Interactions = ({ value }) => html`
  <dl class="stats">
    ${["views", "likes", "comments", "shares"].map((k) => html`<div key=${k}><dt>${k}</dt><dd>${num(value[k])}</dd></div>`)}
    ${typeof value.engagementRate === "number"
      ? html`<div><dt>engagement</dt><dd>${(value.engagementRate * 100).toFixed(2)} %</dd></div>`
      : null}
  </dl>
`

/** @param {{ kind: JobKind | undefined, value: unknown }} props */
export const ResultValue = ({ kind, value }) => {
  if (!isRecord(value)) return html`<${Json} value=${value} />`
  if (kind === "post-generation" && "content" in value) return html`<${GeneratedPost} value=${value} />`
  if (kind === "intraday-triggers" && ("stocks" in value || "news" in value)) return html`<${Trigger} value=${value} />`
  if (kind === "interactions" && "views" in value) return html`<${Interactions} value=${value} />`
  return html`<${Json} value=${value} />`
}
