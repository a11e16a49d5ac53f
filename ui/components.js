// @ts-check
/** Small pieces several pages use: status badges, progress bars, error notes, the table wrapper. */
import { h } from "preact"
import htm from "htm"
import { percent } from "./format.js"

const html = htm.bind(h)

/**
 * A status word as a coloured badge; the text stays the API's word (tests and people read it).
 * @param {{ status: string, testid?: string }} props
 */
export const Badge = ({ status, testid }) =>
  html`<span class=${`badge badge-${status}`} data-testid=${testid}>${status}</span>`

/**
 * A native progress bar carrying its whole percentage in `data-percent` (contract).
 * @param {{ completed: number, total: number, testid?: string, label: string }} props
 */
export const Progress = ({ completed, total, testid, label }) => {
  const pct = percent(completed, total)
  return html`<progress
    class="progress"
    max=${Math.max(total, 1)}
    value=${Math.min(completed, Math.max(total, 1))}
    data-testid=${testid}
    data-percent=${pct}
    aria-label=${label}
    aria-valuetext=${`${pct}% (${completed} of ${total})`}
  >${pct}%</progress>`
}

/** @param {{ message: string | undefined, testid?: string }} props */
export const ErrorNote = ({ message, testid }) =>
  message === undefined ? null : html`<p class="error" role="alert" data-testid=${testid}>${message}</p>`

/**
 * A table that scrolls sideways on narrow screens instead of overflowing the page.
 * @param {{ label: string, children?: import("preact").ComponentChildren }} props
 */
export const TableWrap = ({ label, children }) =>
  html`<div class="table-wrap" role="region" aria-label=${label} tabindex="0">${children}</div>`
