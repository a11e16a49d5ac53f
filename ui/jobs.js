// @ts-check
/**
 * The jobs list (`#/`): newest first, filtered by kind and status, paged by the API's keyset cursor,
 * polled every 2 s so new jobs and progress appear without a reload.
 */
import { h } from "preact"
import { useState } from "preact/hooks"
import htm from "htm"
import { describeError, query, request } from "./api.js"
import { Badge, ErrorNote, Progress, TableWrap } from "./components.js"
import { duration, kinds, shortId, time } from "./format.js"
import { usePoll } from "./hooks.js"

const html = htm.bind(h)

/** @typedef {import("./types.js").Job} Job */
/** @typedef {import("./types.js").JobPage} JobPage */

const PAGE_SIZE = 25
const POLL_MS = 2000
const statuses = ["pending", "running", "completed", "cancelled"]

/** A running job's duration so far, a finished one's as stored. @param {Job} job @param {number} now */
const jobDuration = (job, now) =>
  job.durationMs ?? (job.startedAt === undefined ? undefined : now - new Date(job.startedAt).getTime())

/** @param {{ job: Job, now: number }} props */
const JobRow = ({ job, now }) => html`
  <tr data-testid="job-row" data-job-id=${job.id}>
    <td><a href=${`#/jobs/${encodeURIComponent(job.id)}`} class="mono" title=${job.id}>${shortId(job.id)}</a></td>
    <td data-testid="job-kind">${job.kind}</td>
    <td><${Badge} status=${job.status} testid="job-status" /></td>
    <td class="progress-cell">
      <${Progress} completed=${job.completed} total=${job.total} testid="job-progress" label=${`Progress of job ${shortId(job.id)}`} />
      <span class="muted small">${job.completed}/${job.total}</span>
    </td>
    <td class="counts">
      <span class="ok" title="succeeded">✓ ${job.succeeded}</span>
      <span class="bad" title="failed">✗ ${job.failed}</span>
      <span class="muted" title="cancelled">⊘ ${job.cancelled}</span>
    </td>
    <td>${time(job.startedAt ?? job.createdAt)}</td>
    <td class="num">${duration(jobDuration(job, now))}</td>
  </tr>
`

export const JobsPage = () => {
  const [kind, setKind] = useState("all")
  const [status, setStatus] = useState("all")
  // The cursors of the pages before the current one; the last is the current page's.
  const [cursors, setCursors] = useState(/** @type {(string | undefined)[]} */ ([undefined]))
  const [page, setPage] = useState(/** @type {JobPage | undefined} */ (undefined))
  const [error, setError] = useState(/** @type {string | undefined} */ (undefined))
  const [loadedAt, setLoadedAt] = useState(Date.now)
  const cursor = cursors[cursors.length - 1]

  usePoll(
    async (signal) => {
      const apiKind = kinds.find((k) => k.name === kind)?.kind
      const result = await request(
        `/api/jobs${query({ kind: apiKind, status: status === "all" ? undefined : status, limit: PAGE_SIZE, cursor })}`,
        { signal }
      )
      if (signal.aborted) return
      if (result.ok) {
        setPage(/** @type {JobPage} */ (result.value))
        setError(undefined)
      } else setError(describeError(result.error))
      setLoadedAt(Date.now())
    },
    POLL_MS,
    [kind, status, cursor]
  )

  /** @param {(value: string) => void} set */
  const onFilter = (set) => (/** @type {Event & { currentTarget: HTMLSelectElement }} */ event) => {
    set(event.currentTarget.value)
    setCursors([undefined])
    setPage(undefined)
  }

  const jobs = page?.jobs ?? []
  return html`
    <section aria-labelledby="jobs-title">
      <div class="page-head">
        <h1 id="jobs-title">Jobs</h1>
        <a class="button primary" href="#/new">Start a batch</a>
      </div>
      <div class="filters">
        <label>Kind
          <select data-testid="filter-kind" value=${kind} onChange=${onFilter(setKind)}>
            <option value="all">All kinds</option>
            ${kinds.map((k) => html`<option key=${k.name} value=${k.name}>${k.kind}</option>`)}
          </select>
        </label>
        <label>Status
          <select data-testid="filter-status" value=${status} onChange=${onFilter(setStatus)}>
            <option value="all">All statuses</option>
            ${statuses.map((s) => html`<option key=${s} value=${s}>${s}</option>`)}
          </select>
        </label>
        <span class="muted small" aria-live="polite">${page === undefined ? "Loading…" : `${page.total} job${page.total === 1 ? "" : "s"}`}</span>
      </div>
      <${ErrorNote} message=${error} />
      <${TableWrap} label="Jobs">
        <table data-testid="jobs-table" class="table">
          <thead>
            <tr><th scope="col">Job</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col">Progress</th>
              <th scope="col">Succeeded / failed / cancelled</th><th scope="col">Started</th><th scope="col" class="num">Duration</th></tr>
          </thead>
          <tbody>
            ${jobs.map((job) => html`<${JobRow} key=${job.id} job=${job} now=${loadedAt} />`)}
            ${page !== undefined && jobs.length === 0
              ? html`<tr><td colspan="7" class="empty">No jobs ${kind !== "all" || status !== "all" ? "match these filters" : "yet"}. <a href="#/new">Start a batch</a>.</td></tr>`
              : null}
          </tbody>
        </table>
      <//>
      <div class="pager">
        <button type="button" data-testid="jobs-prev" disabled=${cursors.length <= 1}
          onClick=${() => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c))}>← Newer</button>
        <span class="muted small">Page ${cursors.length}</span>
        <button type="button" data-testid="jobs-next" disabled=${page?.next === undefined}
          onClick=${() => { const next = page?.next; if (next !== undefined) setCursors((c) => [...c, next]) }}>Older →</button>
      </div>
    </section>
  `
}
