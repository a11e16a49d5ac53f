// @ts-check
/**
 * One job (`#/jobs/<id>`): its counts, progress, throughput and ETA, its results in input order
 * filling in as items finish, two charts and the Cancel button. On open it reads the job and every
 * results page, then follows the event stream from the last item already counted; rows are keyed
 * by input index, so nothing read twice can show twice. The stream is closed when the page is left.
 */
import { h } from "preact"
import { useEffect, useRef, useState } from "preact/hooks"
import htm from "htm"
import { describeError, request } from "./api.js"
import { Badge, ErrorNote, Progress } from "./components.js"
import { followJobEvents } from "./events.js"
import { duration, rate, shortId, time } from "./format.js"
import { useNow } from "./hooks.js"
import { JobCharts } from "./job-charts.js"
import { ResultsTable } from "./results.js"

const html = htm.bind(h)

/** @typedef {import("./types.js").Job} Job */
/** @typedef {import("./types.js").JobWithResults} JobWithResults */
/** @typedef {import("./types.js").ResultsPage} ResultsPage */
/** @typedef {import("./types.js").ItemResult} ItemResult */
/** @typedef {import("./types.js").JobEvent} JobEvent */

/** Throughput is measured over this recent window while the job runs. */
const THROUGHPUT_WINDOW_MS = 10_000

/** @param {Job} job */
const ended = (job) => job.status === "completed" || job.status === "cancelled"

/**
 * Everything the page knows about the job; mutated in place by the loader and the event stream and
 * rendered at most once per animation frame (a replay can deliver thousands of events at once).
 * @typedef {object} Live
 * @property {Job | undefined} job
 * @property {Map<number, ItemResult>} results
 * @property {number | undefined} inFlight
 * @property {{ etaMs: number, at: number } | undefined} eta
 * @property {[number, number][]} timeline  [ms, completed] as this page saw them
 */

/** @returns {Live} */
const emptyLive = () => ({ job: undefined, results: new Map(), inFlight: undefined, eta: undefined, timeline: [] })

/**
 * Items per second: over the last seconds while running, over the whole run once ended.
 * @param {Live} live @param {number} now
 */
const throughput = (live, now) => {
  const job = live.job
  if (job === undefined || job.completed === 0) return undefined
  if (ended(job) && job.durationMs !== undefined && job.durationMs > 0) return job.completed / (job.durationMs / 1000)
  const recent = live.timeline.filter(([at]) => at >= now - THROUGHPUT_WINDOW_MS)
  const first = recent[0]
  const last = live.timeline[live.timeline.length - 1]
  if (first !== undefined && last !== undefined && last[0] - first[0] >= 2000) {
    return (last[1] - first[1]) / ((now - first[0]) / 1000)
  }
  if (job.startedAt === undefined) return undefined
  const elapsed = now - new Date(job.startedAt).getTime()
  return elapsed > 0 ? job.completed / (elapsed / 1000) : undefined
}

/** @param {Live} live @param {number} now @param {number | undefined} perSecond */
const etaText = (live, now, perSecond) => {
  const job = live.job
  if (job === undefined) return "—"
  if (ended(job)) return "done"
  const remaining = job.total - job.completed
  if (live.eta !== undefined) return duration(Math.max(0, live.eta.etaMs - (now - live.eta.at)))
  if (perSecond === undefined || perSecond <= 0) return "—"
  return duration((remaining / perSecond) * 1000)
}

/** @param {{ id: string }} props */
export const JobPage = ({ id }) => {
  const live = useRef(emptyLive())
  const [version, setVersion] = useState(0)
  const [error, setError] = useState(/** @type {string | undefined} */ (undefined))
  const [cancelError, setCancelError] = useState(/** @type {string | undefined} */ (undefined))
  const [cancelling, setCancelling] = useState(false)

  useEffect(() => {
    const controller = new AbortController()
    /** @type {{ close: () => void } | undefined} */
    let stream
    let frame = 0
    const changed = () => {
      if (frame !== 0) return
      frame = requestAnimationFrame(() => {
        frame = 0
        setVersion((v) => v + 1)
      })
    }
    const state = live.current
    const mark = () => {
      if (state.job !== undefined) state.timeline.push([Date.now(), state.job.completed])
    }

    /** @param {JobEvent} event */
    const onEvent = (event) => {
      const job = state.job
      if (job === undefined) return
      switch (event.type) {
        case "started": {
          // A replay opens with a `started` stamped with the creation time while the job still waits: not a start.
          const replayed = job.startedAt === undefined && new Date(event.at).getTime() === new Date(job.createdAt).getTime()
          if (replayed || job.status !== "pending") break
          state.job = { ...job, status: "running", startedAt: event.at }
          if (state.timeline.length === 0) state.timeline.push([new Date(event.at).getTime(), 0])
          break
        }
        case "item":
          state.results.set(event.result.index, event.result)
          if (job.status === "pending") state.job = { ...job, status: "running" }
          break
        case "progress": {
          const { type: _type, jobId: _jobId, inFlight, etaMs, ...counts } = event
          state.job = { ...job, ...counts, status: ended(job) ? job.status : "running" }
          state.inFlight = inFlight
          state.eta = etaMs === undefined ? undefined : { etaMs, at: Date.now() }
          mark()
          break
        }
        case "completed":
          state.job = event.job
          state.inFlight = 0
          state.eta = undefined
          mark()
          break
      }
      changed()
    }

    const load = async () => {
      const first = await request(`/api/jobs/${encodeURIComponent(id)}?results=1000`, { signal: controller.signal })
      if (controller.signal.aborted) return
      if (!first.ok) {
        setError(first.error.kind === "http" && first.error.status === 404 ? `No job with id ${id}.` : describeError(first.error))
        return
      }
      const { results, moreResults, ...job } = /** @type {JobWithResults} */ (first.value)
      for (const r of results) state.results.set(r.index, r)
      state.job = job
      if (job.startedAt !== undefined) state.timeline.push([new Date(job.startedAt).getTime(), 0])
      if (ended(job) && job.finishedAt !== undefined) state.timeline.push([new Date(job.finishedAt).getTime(), job.completed])
      else mark()
      changed()
      // The rest of the results, page by page (a job of more than 1000 items).
      let next = moreResults
      while (next !== undefined && !controller.signal.aborted) {
        const page = await request(next, { signal: controller.signal })
        if (!page.ok) break
        const body = /** @type {ResultsPage} */ (page.value)
        for (const r of body.results) if (!state.results.has(r.index)) state.results.set(r.index, r)
        next = body.next === undefined ? undefined : `/api/jobs/${encodeURIComponent(id)}/results?after=${body.next}&limit=1000`
        changed()
      }
      if (controller.signal.aborted || ended(job)) return
      // Item seqs follow finishing order, so the `completed` items counted above are seqs 0..completed-1;
      // anything finished since has a higher seq. Rows replayed anyway only overwrite themselves.
      stream = followJobEvents(id, {
        ...(job.completed > 0 ? { afterSeq: job.completed - 1 } : {}),
        onEvent,
        onError: (message) => setError(message)
      })
      // The stream says nothing until the first item ends, not even that the job started: while it
      // waits for its turn, its status is read every 2 s (`?results=0` is a few hundred bytes).
      while (!controller.signal.aborted && state.job?.status === "pending") {
        await new Promise((resolve) => setTimeout(resolve, 2000))
        const latest = await request(`/api/jobs/${encodeURIComponent(id)}?results=0`, { signal: controller.signal })
        /** @type {Job | undefined} */
        const current = state.job
        if (!latest.ok || current === undefined || current.status !== "pending") continue
        const view = /** @type {Job} */ (latest.value)
        if (view.status === "running") {
          state.job = { ...current, status: "running", ...(view.startedAt === undefined ? {} : { startedAt: view.startedAt }) }
          if (view.startedAt !== undefined) state.timeline.unshift([new Date(view.startedAt).getTime(), 0])
          changed()
        }
      }
    }
    void load()
    return () => {
      controller.abort()
      stream?.close()
      if (frame !== 0) cancelAnimationFrame(frame)
    }
  }, [id])

  const { job } = live.current
  const running = job !== undefined && !ended(job)
  const now = useNow(1000, running)

  const cancel = async () => {
    setCancelling(true)
    setCancelError(undefined)
    const result = await request(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" })
    setCancelling(false)
    if (!result.ok) setCancelError(describeError(result.error))
    else {
      // Usually still running here: the stream brings the cancelled items and the final job.
      const view = /** @type {Job} */ (result.value)
      if (ended(view)) {
        live.current.job = view
        setVersion((v) => v + 1)
      }
    }
  }

  if (error !== undefined && job === undefined) {
    return html`<section class="card"><h1>Job</h1><${ErrorNote} message=${error} /><p><a href="#/">Back to the jobs</a></p></section>`
  }
  if (job === undefined) return html`<section aria-busy="true"><h1>Job</h1><p class="muted">Loading…</p></section>`

  const perSecond = throughput(live.current, now)
  const sorted = [...live.current.results.values()].sort((a, b) => a.index - b.index)
  return html`
    <section aria-labelledby="job-title">
      <p class="crumbs"><a href="#/">Jobs</a> / <span class="mono">${shortId(job.id)}</span></p>
      <div class="page-head">
        <h1 id="job-title">${job.kind} <span class="mono muted small">${job.id}</span></h1>
        <button type="button" class="danger" data-testid="job-cancel" disabled=${!running || cancelling} onClick=${cancel}>
          ${cancelling ? "Cancelling…" : "Cancel"}
        </button>
      </div>
      <${ErrorNote} message=${cancelError ?? error} />
      <div class="summary card">
        <div class="summary-progress">
          <${Badge} status=${job.status} testid="job-status" />
          <${Progress} completed=${job.completed} total=${job.total} testid="job-progress" label="Job progress" />
          <span class="num">${job.completed} / ${job.total}</span>
        </div>
        <dl class="stats">
          <div class="wide"><dt>Counts</dt><dd data-testid="job-counts">
            <span class=${job.succeeded > 0 ? "ok" : ""}>${job.succeeded} succeeded</span>, <span class=${job.failed > 0 ? "bad" : ""}>${job.failed} failed</span>, <span>${job.cancelled} cancelled</span>${job.skipped > 0 ? `, ${job.skipped} skipped` : ""}
          </dd></div>
          <div><dt>Throughput</dt><dd data-testid="job-throughput">${perSecond === undefined ? "—" : `${rate(perSecond)} items/s`}</dd></div>
          <div><dt>ETA</dt><dd data-testid="job-eta">${etaText(live.current, now, perSecond)}</dd></div>
          <div><dt>In flight</dt><dd>${running ? live.current.inFlight ?? "—" : 0}</dd></div>
          <div><dt>Started</dt><dd>${time(job.startedAt)}</dd></div>
          <div><dt>Duration</dt><dd>${duration(job.durationMs ?? (job.startedAt === undefined ? undefined : now - new Date(job.startedAt).getTime()))}</dd></div>
          <div><dt>Limits</dt><dd class="small">${[
            job.options.maxConcurrent === undefined ? undefined : `maxConcurrent ${job.options.maxConcurrent}`,
            job.options.timeoutSeconds === undefined ? undefined : `timeout ${job.options.timeoutSeconds} s`,
            job.options.priority === undefined ? undefined : `priority ${job.options.priority}`
          ].filter((s) => s !== undefined).join(" · ") || "processor defaults"}</dd></div>
        </dl>
      </div>
      <${JobCharts} timeline=${live.current.timeline} results=${sorted} completed=${job.completed}
        endedBeforeOpen=${ended(job) && live.current.timeline.length <= 2} version=${version} />
      <h2>Results <span class="muted small">(${sorted.length} of ${job.total} finished, in input order)</span></h2>
      <${ResultsTable} results=${sorted} kind=${job.kind} />
    </section>
  `
}
