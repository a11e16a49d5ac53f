// @ts-check
/**
 * Starting a batch (`#/new`) on any of the three routes: the items as JSON (prefilled with an
 * example that runs against the sandbox), the per-request limits, sent with `Prefer: respond-async`
 * so the answer is the job to follow. The service's 400 names each field it rejects (`maxConcurrent`,
 * `requests.0.stockCode`, `0.triggerKey`); each message is shown next to that field.
 */
import { h } from "preact"
import { useState } from "preact/hooks"
import htm from "htm"
import { describeError, query, request } from "./api.js"

const html = htm.bind(h)

/** @typedef {"interactions" | "post_generation" | "intraday_triggers"} BatchKind */
/** @typedef {{ path: string, message: string }} Issue */

/**
 * @typedef {object} Route
 * @property {string} label
 * @property {string} path
 * @property {string} itemsLabel what the textarea holds
 * @property {"body" | "query"} limitsIn where the route takes its limits
 * @property {string | undefined} wrap the body field the items go in (the intraday route takes a bare array)
 * @property {boolean} optionalItems the route may be called without items
 * @property {unknown[]} example
 */

/** @type {Record<BatchKind, Route>} */
const routes = {
  interactions: {
    label: "Fetch interactions",
    path: "/api/interactions/fetch-all-interactions",
    itemsLabel: "Posts (JSON array of { postId, articleId, kolSerial })",
    limitsIn: "body",
    wrap: "posts",
    optionalItems: true,
    example: Array.from({ length: 12 }, (_, i) => ({ postId: `p${i + 1}`, articleId: `a${i + 1}`, kolSerial: "101" }))
  },
  post_generation: {
    label: "Generate posts",
    path: "/api/post/batch-generate-stream",
    itemsLabel: "Requests (JSON array of { kolSerial, stockCode, stockName?, trigger?, persona?, prompt? })",
    limitsIn: "body",
    wrap: "requests",
    optionalItems: false,
    example: [
      { kolSerial: "101", stockCode: "2330", stockName: "台積電", trigger: "漲停" },
      { kolSerial: "101", stockCode: "2317", stockName: "鴻海", trigger: "爆量" },
      { kolSerial: "102", stockCode: "2454", stockName: "聯發科" },
      { kolSerial: "102", stockCode: "2603", stockName: "長榮", trigger: "跳空上漲" }
    ]
  },
  intraday_triggers: {
    label: "Intraday triggers",
    path: "/api/intraday/parallel/execute-multiple",
    itemsLabel: "Trigger configs (JSON array of { triggerKey, limit?, newsKeywords? })",
    limitsIn: "query",
    wrap: undefined,
    optionalItems: false,
    example: [
      { triggerKey: "limit_up" },
      { triggerKey: "volume_surge", limit: 5 },
      { triggerKey: "gap_up", limit: 5, newsKeywords: ["AI"] },
      { triggerKey: "limit_down", limit: 3 }
    ]
  }
}
const batchKinds = /** @type {BatchKind[]} */ (Object.keys(routes))
const limitFields = ["maxConcurrent", "timeoutSeconds", "priority"]

/** @param {BatchKind} kind */
const exampleText = (kind) => JSON.stringify(routes[kind].example, null, 2)

/**
 * The messages the service gave for one field.
 * @param {{ issues: Issue[], field: string, id: string }} props
 */
const FieldErrors = ({ issues, field, id }) => {
  const mine = issues.filter((issue) => issue.path === field)
  return mine.length === 0
    ? null
    : html`<p class="field-error" id=${id} data-testid="field-error" data-field=${field}>${mine.map((i) => i.message).join("; ")}</p>`
}

/**
 * A number field's value for the request: omitted when empty; text that is not a number is sent
 * as it is, so the service's own message explains it.
 * @param {string} raw
 * @returns {number | string | undefined}
 */
const numberValue = (raw) => {
  const text = raw.trim()
  if (text === "") return undefined
  const n = Number(text)
  return Number.isFinite(n) ? n : text
}

export const NewBatchPage = () => {
  const [kind, setKind] = useState(/** @type {BatchKind} */ ("interactions"))
  const [drafts, setDrafts] = useState(() => /** @type {Record<BatchKind, string>} */ ({
    interactions: exampleText("interactions"),
    post_generation: exampleText("post_generation"),
    intraday_triggers: exampleText("intraday_triggers")
  }))
  const [maxConcurrent, setMaxConcurrent] = useState("")
  const [timeoutSeconds, setTimeoutSeconds] = useState("")
  const [priority, setPriority] = useState("")
  const [issues, setIssues] = useState(/** @type {Issue[]} */ ([]))
  const [formError, setFormError] = useState(/** @type {string | undefined} */ (undefined))
  const [submitting, setSubmitting] = useState(false)
  const route = routes[kind]

  /** @param {SubmitEvent} event */
  const submit = async (event) => {
    event.preventDefault()
    setIssues([])
    setFormError(undefined)
    /** @type {unknown} */
    let items
    try {
      // Empty means "no items given": the interactions route then fetches every tracked post.
      items = drafts[kind].trim() === "" && route.optionalItems ? undefined : JSON.parse(drafts[kind])
    } catch (cause) {
      setFormError(`The JSON is not valid: ${cause instanceof Error ? cause.message : String(cause)}`)
      return
    }
    /** @type {Record<string, unknown>} */
    const limits = {}
    const mc = numberValue(maxConcurrent)
    const ts = numberValue(timeoutSeconds)
    if (mc !== undefined) limits.maxConcurrent = mc
    if (ts !== undefined) limits.timeoutSeconds = ts
    if (priority !== "") limits.priority = priority
    /** @type {unknown} */
    let body
    let path = route.path
    if (route.limitsIn === "query") {
      body = items
      path += query({ maxConcurrent: maxConcurrent.trim(), timeoutSeconds: timeoutSeconds.trim(), priority })
    } else {
      // A pasted whole body (an object) is sent as it is, with the form's limits on top.
      const base =
        items === undefined ? {}
        : typeof items === "object" && items !== null && !Array.isArray(items) ? items
        : { [route.wrap ?? "items"]: items }
      body = { ...base, ...limits }
    }
    setSubmitting(true)
    const result = await request(path, { method: "POST", body, headers: { prefer: "respond-async" } })
    setSubmitting(false)
    if (result.ok) {
      const job = /** @type {{ id?: unknown }} */ (result.value)
      if (typeof job.id === "string") location.hash = `#/jobs/${encodeURIComponent(job.id)}`
      else setFormError("The service accepted the batch but did not say which job it is.")
      return
    }
    const fieldIssues = result.error.kind === "http" ? result.error.body?.issues ?? [] : []
    if (fieldIssues.length > 0) setIssues(fieldIssues)
    else setFormError(describeError(result.error))
  }

  const bodyIssues = issues.filter((issue) => !limitFields.includes(issue.path))
  const bodyPaths = [...new Set(bodyIssues.map((issue) => issue.path))]
  /** @param {(value: string) => void} set */
  const onText = (set) => (/** @type {Event & { currentTarget: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement }} */ e) =>
    set(e.currentTarget.value)
  /** @param {string} field */
  const describedBy = (field) => (issues.some((i) => i.path === field) ? `error-${field}` : undefined)

  return html`
    <section aria-labelledby="new-title">
      <h1 id="new-title">Start a batch</h1>
      <form class="card form" onSubmit=${submit} noValidate>
        <div class="field">
          <label for="batch-kind">Route</label>
          <select id="batch-kind" data-testid="batch-kind" value=${kind}
            onChange=${(/** @type {Event & { currentTarget: HTMLSelectElement }} */ e) => {
              const next = batchKinds.find((k) => k === e.currentTarget.value)
              if (next !== undefined) setKind(next)
              setIssues([])
              setFormError(undefined)
            }}>
            ${batchKinds.map((k) => html`<option key=${k} value=${k}>${routes[k].label} (${k})</option>`)}
          </select>
          <p class="hint mono small">POST ${route.path}</p>
        </div>
        <div class="field">
          <div class="label-row">
            <label for="batch-json">${route.itemsLabel}</label>
            <button type="button" class="link small" onClick=${() => setDrafts((d) => ({ ...d, [kind]: exampleText(kind) }))}>Reset to the example</button>
          </div>
          <textarea id="batch-json" data-testid="batch-json" rows="14" spellcheck=${false}
            aria-invalid=${bodyPaths.length > 0} aria-describedby=${bodyPaths.length > 0 ? "error-body" : undefined}
            value=${drafts[kind]}
            onInput=${(/** @type {Event & { currentTarget: HTMLTextAreaElement }} */ e) => {
              const value = e.currentTarget.value
              setDrafts((d) => ({ ...d, [kind]: value }))
            }}></textarea>
          ${route.optionalItems ? html`<p class="hint small">Leave it empty to fetch every tracked post with an articleId.</p>` : null}
          <div id="error-body">
            ${bodyPaths.map((path) => html`<${FieldErrors} key=${path} issues=${issues} field=${path} id=${`error-${path}`} />`)}
          </div>
        </div>
        <div class="field-grid">
          <div class="field">
            <label for="batch-maxConcurrent">maxConcurrent</label>
            <input id="batch-maxConcurrent" data-testid="batch-maxConcurrent" type="number" inputmode="numeric" min="1" max="256" step="1"
              placeholder="processor default" value=${maxConcurrent} onInput=${onText(setMaxConcurrent)}
              aria-invalid=${describedBy("maxConcurrent") !== undefined} aria-describedby=${describedBy("maxConcurrent")} />
            <${FieldErrors} issues=${issues} field="maxConcurrent" id="error-maxConcurrent" />
          </div>
          <div class="field">
            <label for="batch-timeoutSeconds">timeoutSeconds <span class="muted small">(per attempt)</span></label>
            <input id="batch-timeoutSeconds" data-testid="batch-timeoutSeconds" type="number" inputmode="decimal" min="0.1" max="3600" step="0.1"
              placeholder="processor default" value=${timeoutSeconds} onInput=${onText(setTimeoutSeconds)}
              aria-invalid=${describedBy("timeoutSeconds") !== undefined} aria-describedby=${describedBy("timeoutSeconds")} />
            <${FieldErrors} issues=${issues} field="timeoutSeconds" id="error-timeoutSeconds" />
          </div>
          <div class="field">
            <label for="batch-priority">priority</label>
            <select id="batch-priority" data-testid="batch-priority" value=${priority} onChange=${onText(setPriority)}
              aria-invalid=${describedBy("priority") !== undefined} aria-describedby=${describedBy("priority")}>
              <option value="">normal (default)</option>
              <option value="high">high</option>
              <option value="normal">normal</option>
              <option value="low">low</option>
            </select>
            <${FieldErrors} issues=${issues} field="priority" id="error-priority" />
          </div>
        </div>
        ${formError === undefined ? null : html`<p class="error" role="alert" data-testid="form-error">${formError}</p>`}
        ${issues.length > 0 ? html`<p class="error" role="alert">The service rejected ${issues.length === 1 ? "a field" : `${issues.length} fields`}: see the messages above.</p>` : null}
        <div class="actions">
          <button type="submit" class="primary" data-testid="batch-submit" disabled=${submitting}>${submitting ? "Starting…" : "Start batch"}</button>
        </div>
      </form>
    </section>
  `
}
