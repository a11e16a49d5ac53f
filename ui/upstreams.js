// @ts-check
/**
 * Operations (`#/upstreams`): each upstream's adaptive limit against its ceiling with a chart of the
 * last minutes, in flight, waiting, cooldown countdown and 429s; the circuit breakers with the time
 * to their next probe; the processors' defaults with an inline PATCH form; the instances alive.
 * Polled every 2 s; the history route is read in full only every 30 s and extended in between by the
 * 2-second polls, so an open page costs the service little.
 */
import { h } from "preact"
import { useEffect, useMemo, useRef, useState } from "preact/hooks"
import htm from "htm"
import { describeError, request } from "./api.js"
import { axes, Chart, fromZero, palette } from "./charts.js"
import { Badge, ErrorNote, TableWrap } from "./components.js"
import { countdown, duration, time } from "./format.js"
import { useNow, usePoll } from "./hooks.js"

const html = htm.bind(h)

/** @typedef {import("./types.js").Upstream} Upstream */
/** @typedef {import("./types.js").Breaker} Breaker */
/** @typedef {import("./types.js").Processor} Processor */
/** @typedef {import("./types.js").Instance} Instance */
/** @typedef {import("./types.js").UpstreamHistory} UpstreamHistory */
/** @typedef {{ at: number, limits: Record<string, number> }} Sample */

const POLL_MS = 2000
const HISTORY_RESYNC_MS = 30_000
const HISTORY_WINDOW_MS = 10 * 60_000

/**
 * The time axis spans at least the last minute, so a page opened seconds ago does not plot a few
 * samples across milliseconds.
 * @type {import("uplot").Range.Function}
 */
const atLeastAMinute = (_plot, min, max) => [Math.min(min, max - 60), max]

/** The limit chart: one line per upstream, time in seconds, gaps where an upstream has no sample. */
const LimitChart = (/** @type {{ keys: string[], samples: Sample[] }} */ { keys, samples }) => {
  const colors = palette()
  const data = useMemo(() => {
    /** @type {(number | null)[][]} */
    const columns = [samples.map((s) => s.at / 1000), ...keys.map((key) => samples.map((s) => s.limits[key] ?? null))]
    return /** @type {import("uplot").AlignedData} */ (columns)
  }, [samples, keys])
  return html`<${Chart}
    key=${keys.join(",")}
    testid="chart-upstream-limit"
    title="Adaptive limit over the last minutes"
    summary=${`Each upstream's concurrency limit over time: ${keys.join(", ")}`}
    data=${data}
    height=${200}
    options=${{
      scales: { x: { time: true, range: atLeastAMinute }, y: { range: fromZero } },
      axes: axes("limit"),
      series: [{}, ...keys.map((key, i) => ({ label: key, stroke: colors[i % colors.length], width: 2, spanGaps: false, points: { show: false } }))]
    }}
  />`
}

/** @param {{ upstream: Upstream, now: number }} props */
const UpstreamRow = ({ upstream, now }) => {
  const cooling = upstream.cooldownUntil === undefined ? 0 : new Date(upstream.cooldownUntil).getTime() - now
  const ratio = upstream.ceiling > 0 ? upstream.limit / upstream.ceiling : 0
  return html`
    <tr data-testid="upstream-row" data-key=${upstream.key} class=${cooling > 0 ? "cooling" : ""}>
      <th scope="row">${upstream.key}</th>
      <td class="num">
        <span data-testid="upstream-limit">${upstream.limit}</span>
        <meter class="meter" min="0" max=${upstream.ceiling} value=${upstream.limit} low=${upstream.ceiling * 0.5}
          optimum=${upstream.ceiling} aria-label=${`${upstream.key} limit ${upstream.limit} of ${upstream.ceiling}`}
          title=${`${Math.round(ratio * 100)} % of the ceiling`}></meter>
      </td>
      <td class="num" data-testid="upstream-ceiling">${upstream.ceiling}${upstream.share === undefined ? "" : html` <span class="muted small">(share ${upstream.share})</span>`}</td>
      <td class="num" data-testid="upstream-inflight">${upstream.inFlight}</td>
      <td class="num" data-testid="upstream-waiting">${upstream.waitingItems}${upstream.waitingJobs > 0 ? html` <span class="muted small">(${upstream.waitingJobs} jobs)</span>` : ""}</td>
      <td class="num" data-testid="upstream-cooldown">${cooling > 0 ? countdown(cooling) : "—"}</td>
      <td class="num" data-testid="upstream-throttled">${upstream.throttled}</td>
      <td class="small">${upstream.algorithm}${upstream.adaptive ? "" : " (fixed)"}${upstream.rate === undefined ? "" : ` · ${upstream.rate}`}</td>
    </tr>
  `
}

/** @param {{ breaker: Breaker, readAt: number, now: number }} props */
const BreakerRow = ({ breaker, readAt, now }) => {
  const probeIn = breaker.retryAfterMs === undefined ? undefined : breaker.retryAfterMs - Math.max(0, now - readAt)
  return html`
    <tr data-testid="breaker-row" data-key=${breaker.key}>
      <th scope="row">${breaker.key}</th>
      <td><${Badge} status=${breaker.status} testid="breaker-status" /></td>
      <td class="num" data-testid="breaker-next-probe">${
        breaker.status === "closed" ? "—" : probeIn === undefined ? "probing" : probeIn > 0 ? countdown(probeIn) : "now"}</td>
      <td class="num">${breaker.probesInFlight}</td>
      <td>${time(breaker.since)}</td>
    </tr>
  `
}

/** @param {{ processor: Processor, onSaved: (p: Processor) => void }} props */
const ProcessorRow = ({ processor, onSaved }) => {
  const [maxConcurrent, setMaxConcurrent] = useState(String(processor.maxConcurrent))
  const [timeoutSeconds, setTimeoutSeconds] = useState(String(processor.timeoutSeconds))
  const [message, setMessage] = useState(/** @type {{ ok: boolean, text: string } | undefined} */ (undefined))
  const [saving, setSaving] = useState(false)
  const dirty = maxConcurrent !== String(processor.maxConcurrent) || timeoutSeconds !== String(processor.timeoutSeconds)
  // A value changed on the service (another operator, another tab): show it.
  useEffect(() => {
    setMaxConcurrent(String(processor.maxConcurrent))
    setTimeoutSeconds(String(processor.timeoutSeconds))
  }, [processor.maxConcurrent, processor.timeoutSeconds])

  /** @param {SubmitEvent} event */
  const save = async (event) => {
    event.preventDefault()
    /** @type {Record<string, number | string>} */
    const patch = {}
    if (maxConcurrent !== String(processor.maxConcurrent)) patch.maxConcurrent = Number.isFinite(Number(maxConcurrent)) && maxConcurrent.trim() !== "" ? Number(maxConcurrent) : maxConcurrent
    if (timeoutSeconds !== String(processor.timeoutSeconds)) patch.timeoutSeconds = Number.isFinite(Number(timeoutSeconds)) && timeoutSeconds.trim() !== "" ? Number(timeoutSeconds) : timeoutSeconds
    setSaving(true)
    setMessage(undefined)
    const result = await request(`/api/processors/${encodeURIComponent(processor.name)}`, { method: "PATCH", body: patch })
    setSaving(false)
    if (result.ok) {
      onSaved(/** @type {Processor} */ (result.value))
      setMessage({ ok: true, text: "Saved" })
    } else setMessage({ ok: false, text: describeError(result.error) })
  }
  const formId = `processor-${processor.name}`
  return html`
    <tr data-testid="processor-row" data-name=${processor.name}>
      <th scope="row">${processor.name}</th>
      <td>
        <input form=${formId} type="number" min="1" max="256" step="1" inputmode="numeric" class="narrow"
          data-testid="processor-maxConcurrent" aria-label=${`${processor.name} maxConcurrent`}
          value=${maxConcurrent} onInput=${(/** @type {Event & { currentTarget: HTMLInputElement }} */ e) => setMaxConcurrent(e.currentTarget.value)} />
      </td>
      <td>
        <input form=${formId} type="number" min="0.1" max="3600" step="0.1" inputmode="decimal" class="narrow"
          data-testid="processor-timeoutSeconds" aria-label=${`${processor.name} timeoutSeconds`}
          value=${timeoutSeconds} onInput=${(/** @type {Event & { currentTarget: HTMLInputElement }} */ e) => setTimeoutSeconds(e.currentTarget.value)} />
      </td>
      <td>
        <form id=${formId} onSubmit=${save} noValidate class="inline">
          <button type="submit" data-testid="processor-save" disabled=${saving || !dirty}>${saving ? "Saving…" : "Save"}</button>
          ${message === undefined ? null : html`<span class=${message.ok ? "ok small" : "error small"} role="status">${message.text}</span>`}
        </form>
      </td>
    </tr>
  `
}

/**
 * Samples from the history route (times as the service stamped them).
 * @param {UpstreamHistory} history
 * @returns {Sample[]}
 */
const fromHistory = (history) =>
  history.samples.map((s) => ({ at: new Date(s.at).getTime(), limits: Object.fromEntries(s.upstreams.map((u) => [u.key, u.limit])) }))

export const UpstreamsPage = () => {
  const [upstreams, setUpstreams] = useState(/** @type {Upstream[] | undefined} */ (undefined))
  const [breakers, setBreakers] = useState(/** @type {{ list: Breaker[], readAt: number } | undefined} */ (undefined))
  const [processors, setProcessors] = useState(/** @type {Processor[] | undefined} */ (undefined))
  const [instances, setInstances] = useState(/** @type {Instance[] | "unavailable" | undefined} */ (undefined))
  const [samples, setSamples] = useState(/** @type {Sample[]} */ ([]))
  const [historyAvailable, setHistoryAvailable] = useState(true)
  const historyReadAt = useRef(0)
  const [error, setError] = useState(/** @type {string | undefined} */ (undefined))

  usePoll(
    async (signal) => {
      const [u, b] = await Promise.all([
        request("/api/upstreams", { signal }),
        request("/api/breakers", { signal })
      ])
      if (signal.aborted) return
      const now = Date.now()
      if (u.ok) {
        const list = /** @type {Upstream[]} */ (u.value)
        setUpstreams(list)
        // Extend the chart locally between full history reads.
        setSamples((prev) => [...prev.filter((s) => s.at >= now - HISTORY_WINDOW_MS), { at: now, limits: Object.fromEntries(list.map((x) => [x.key, x.limit])) }])
      }
      if (b.ok) setBreakers({ list: /** @type {Breaker[]} */ (b.value), readAt: now })
      setError(!u.ok ? describeError(u.error) : !b.ok ? describeError(b.error) : undefined)
      if (historyAvailable && now - historyReadAt.current >= HISTORY_RESYNC_MS) {
        historyReadAt.current = now
        const history = await request("/api/upstreams/history", { signal })
        if (signal.aborted) return
        if (history.ok) {
          const server = fromHistory(/** @type {UpstreamHistory} */ (history.value))
          const last = server[server.length - 1]?.at ?? 0
          setSamples((prev) => [...server, ...prev.filter((s) => s.at > last)])
        } else if (history.error.kind === "http" && history.error.status === 404) setHistoryAvailable(false)
      }
    },
    POLL_MS,
    [historyAvailable]
  )

  usePoll(
    async (signal) => {
      const p = await request("/api/processors", { signal })
      if (!signal.aborted && p.ok) setProcessors(/** @type {Processor[]} */ (p.value))
    },
    10_000,
    []
  )

  usePoll(
    async (signal) => {
      if (instances === "unavailable") return
      const i = await request("/api/instances", { signal })
      if (signal.aborted) return
      if (i.ok) setInstances(/** @type {Instance[]} */ (i.value))
      else if (i.error.kind === "http" && i.error.status === 404) setInstances("unavailable")
    },
    5_000,
    [instances === "unavailable"]
  )

  const ticking =
    (upstreams ?? []).some((u) => u.cooldownUntil !== undefined) || (breakers?.list ?? []).some((b) => b.retryAfterMs !== undefined)
  const now = useNow(1000, ticking)
  const keys = useMemo(() => (upstreams ?? []).map((u) => u.key), [(upstreams ?? []).map((u) => u.key).join(",")])

  return html`
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Upstreams</h1>
      <${ErrorNote} message=${error} />
      <${TableWrap} label="Upstreams">
        <table class="table" data-testid="upstreams-table">
          <thead><tr><th scope="col">Upstream</th><th scope="col" class="num">Limit</th><th scope="col" class="num">Ceiling</th>
            <th scope="col" class="num">In flight</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Cooldown</th>
            <th scope="col" class="num">Throttled (429)</th><th scope="col">Algorithm</th></tr></thead>
          <tbody>
            ${(upstreams ?? []).map((u) => html`<${UpstreamRow} key=${u.key} upstream=${u} now=${now} />`)}
            ${upstreams === undefined ? html`<tr><td colspan="8" class="empty">Loading…</td></tr>` : null}
          </tbody>
        </table>
      <//>
      ${keys.length > 0 ? html`<${LimitChart} keys=${keys} samples=${samples} />` : null}
      ${historyAvailable ? null : html`<p class="muted small">This service keeps no limit history: the chart starts when the page opened.</p>`}

      <h2>Circuit breakers</h2>
      <${TableWrap} label="Circuit breakers">
        <table class="table" data-testid="breakers-table">
          <thead><tr><th scope="col">Upstream</th><th scope="col">State</th><th scope="col" class="num">Next probe</th>
            <th scope="col" class="num">Probes in flight</th><th scope="col">Since</th></tr></thead>
          <tbody>
            ${(breakers?.list ?? []).map((b) => html`<${BreakerRow} key=${b.key} breaker=${b} readAt=${breakers?.readAt ?? now} now=${now} />`)}
          </tbody>
        </table>
      <//>

      <h2>Processors <span class="muted small">(defaults for new batches; running batches pick changes up)</span></h2>
      <${TableWrap} label="Processors">
        <table class="table" data-testid="processors-table">
          <thead><tr><th scope="col">Processor</th><th scope="col">maxConcurrent</th><th scope="col">timeoutSeconds</th><th scope="col"><span class="sr-only">Save</span></th></tr></thead>
          <tbody>
            ${(processors ?? []).map((p) => html`<${ProcessorRow} key=${p.name} processor=${p}
              onSaved=${(/** @type {Processor} */ saved) => setProcessors((list) => (list ?? []).map((x) => (x.name === saved.name ? saved : x)))} />`)}
          </tbody>
        </table>
      <//>

      <h2>Instances</h2>
      ${instances === "unavailable"
        ? html`<p class="muted">This service does not list its instances.</p>`
        : html`<${TableWrap} label="Instances">
            <table class="table" data-testid="instances-table">
              <thead><tr><th scope="col">Instance</th><th scope="col">Alive</th><th scope="col">Address</th><th scope="col">Started</th><th scope="col">Last seen</th></tr></thead>
              <tbody>
                ${(instances ?? []).map((i) => html`<tr key=${i.id} data-testid="instance-row">
                  <td data-testid="instance-id" class="mono">${i.id}${i.self ? html` <span class="tag">this one</span>` : null}</td>
                  <td data-testid="instance-alive"><${Badge} status=${i.alive ? "alive" : "down"} /></td>
                  <td class="mono">${i.address ?? "—"}</td>
                  <td>${time(i.startedAt)}</td>
                  <td>${i.lastSeen === undefined ? "—" : `${duration(Math.max(0, Date.now() - new Date(i.lastSeen).getTime()))} ago`}</td>
                </tr>`)}
              </tbody>
            </table>
          <//>`}
    </section>
  `
}
