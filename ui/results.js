// @ts-check
/**
 * A job's results table: finished items in input order, each with its status, attempts, duration,
 * error, and its value on request. The first rows are rendered at once and more on request, so a
 * 10,000-item job does not put 10,000 rows in the page.
 */
import { h } from "preact"
import { useState } from "preact/hooks"
import htm from "htm"
import { Badge, TableWrap } from "./components.js"
import { duration } from "./format.js"
import { ResultValue } from "./values.js"

const html = htm.bind(h)

/** @typedef {import("./types.js").ItemResult} ItemResult */
/** @typedef {import("./types.js").JobKind} JobKind */

/** Rows rendered at first; more on request. */
const ROWS_STEP = 500

/** @param {{ result: ItemResult, kind: JobKind | undefined }} props */
const ResultRow = ({ result, kind }) => {
  const [open, setOpen] = useState(false)
  const detailId = `result-detail-${result.index}`
  const hasValue = result.status === "succeeded"
  return html`
    <tr data-testid="result-row" data-index=${result.index} class=${open ? "open" : ""}>
      <td class="num">${result.index}</td>
      <td class="mono">${result.id ?? ""}</td>
      <td><${Badge} status=${result.status} testid="result-status" /></td>
      <td class="num" data-testid="result-attempts">${result.attempts}</td>
      <td class="num" data-testid="result-duration">${duration(result.durationMs)}</td>
      <td data-testid="result-error" class="error-cell">
        ${result.status === "succeeded"
          ? null
          : html`<strong>${result.error.type}</strong> <span>${result.error.message}</span>${
              result.error.retryAfterMs === undefined ? null : html` <span class="muted small">(retry after ${duration(result.error.retryAfterMs)})</span>`}`}
      </td>
      <td>
        ${hasValue
          ? html`<button type="button" class="link" data-testid="result-expand" aria-expanded=${open} aria-controls=${detailId}
              onClick=${() => setOpen((o) => !o)}>${open ? "Hide" : "Show"}<span class="sr-only"> value of item ${result.index}</span></button>`
          : null}
      </td>
    </tr>
    ${open && result.status === "succeeded"
      ? html`<tr class="detail" id=${detailId}><td colspan="7"><div data-testid="result-value"><${ResultValue} kind=${kind} value=${result.value} /></div></td></tr>`
      : null}
  `
}

/**
 * @param {{ results: ItemResult[], kind: JobKind }} props results sorted by index
 */
export const ResultsTable = ({ results, kind }) => {
  const [rows, setRows] = useState(ROWS_STEP)
  return html`
    <${TableWrap} label="Results">
      <table class="table" data-testid="results-table">
        <thead><tr><th scope="col" class="num">#</th><th scope="col">Id</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th>
          <th scope="col" class="num">Duration</th><th scope="col">Error</th><th scope="col"><span class="sr-only">Value</span></th></tr></thead>
        <tbody>
          ${results.slice(0, rows).map((r) => html`<${ResultRow} key=${r.index} result=${r} kind=${kind} />`)}
          ${results.length === 0 ? html`<tr><td colspan="7" class="empty">No item has finished yet.</td></tr>` : null}
        </tbody>
      </table>
    <//>
    ${results.length > rows
      ? html`<p><button type="button" onClick=${() => setRows((n) => n + ROWS_STEP)}>Show ${Math.min(ROWS_STEP, results.length - rows)} more rows</button></p>`
      : null}
  `
}
