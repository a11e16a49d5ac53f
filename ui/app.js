// @ts-check
/**
 * The dashboard's entry point: the hash router (`#/`, `#/jobs/<id>`, `#/new`, `#/upstreams`), the
 * shell with its navigation and connection indicator, and the API-key prompt shown whenever the
 * service answers 401.
 */
import { h, render } from "preact"
import { useEffect, useRef, useState } from "preact/hooks"
import htm from "htm"
import { apiKey, connection, keyRequired, setApiKey } from "./api.js"
import { JobPage } from "./job.js"
import { JobsPage } from "./jobs.js"
import { NewBatchPage } from "./new-batch.js"
import { useStore } from "./store.js"
import { UpstreamsPage } from "./upstreams.js"

const html = htm.bind(h)

/**
 * @typedef {{ name: "jobs" } | { name: "job", id: string } | { name: "new" } | { name: "upstreams" } | { name: "missing", path: string }} Route
 */

/** @returns {Route} */
const parseRoute = () => {
  const path = location.hash.replace(/^#/, "") || "/"
  if (path === "/" || path === "") return { name: "jobs" }
  if (path === "/new") return { name: "new" }
  if (path === "/upstreams") return { name: "upstreams" }
  const job = /^\/jobs\/([^/]+)$/.exec(path)
  if (job?.[1] !== undefined) return { name: "job", id: decodeURIComponent(job[1]) }
  return { name: "missing", path }
}

const useRoute = () => {
  const [route, setRoute] = useState(parseRoute)
  useEffect(() => {
    const onChange = () => setRoute(parseRoute())
    addEventListener("hashchange", onChange)
    return () => removeEventListener("hashchange", onChange)
  }, [])
  return route
}

const titles = { jobs: "Jobs", job: "Job", new: "Start a batch", upstreams: "Upstreams", missing: "Not found" }

/** @param {{ route: Route }} props */
const Nav = ({ route }) => {
  const links = [
    { href: "#/", testid: "nav-jobs", label: "Jobs", current: route.name === "jobs" || route.name === "job" },
    { href: "#/new", testid: "nav-new", label: "Start a batch", current: route.name === "new" },
    { href: "#/upstreams", testid: "nav-upstreams", label: "Upstreams", current: route.name === "upstreams" }
  ]
  return html`
    <nav aria-label="Main">
      <ul>
        ${links.map(
          (link) => html`<li key=${link.testid}>
            <a href=${link.href} data-testid=${link.testid} aria-current=${link.current ? "page" : undefined}>${link.label}</a>
          </li>`
        )}
      </ul>
    </nav>
  `
}

const ConnectionStatus = () => {
  const status = useStore(connection)
  const labels = { live: "live", reconnecting: "reconnecting", offline: "offline" }
  return html`<span class=${`conn conn-${status}`} data-testid="conn-status" role="status" title="Connection to the service">
    <span class="conn-dot" aria-hidden="true"></span>${labels[status]}
  </span>`
}

/** @param {{ onSubmit: () => void }} props */
const KeyPrompt = ({ onSubmit }) => {
  const input = useRef(/** @type {HTMLInputElement | null} */ (null))
  const [key, setKey] = useState("")
  // A key already kept means the service turned it down (changed, or mistyped).
  const [rejected] = useState(() => apiKey() !== "")
  useEffect(() => input.current?.focus(), [])
  /** @param {SubmitEvent} event */
  const submit = (event) => {
    event.preventDefault()
    if (key.trim() === "") return
    setApiKey(key.trim())
    onSubmit()
  }
  return html`
    <section class="card key-prompt" aria-labelledby="key-title">
      <h1 id="key-title">API key required</h1>
      <p>This service asks for an API key (<code>API_KEY</code>). It is kept for this browser tab only.</p>
      ${rejected ? html`<p class="error" role="alert">The service did not accept the key entered before.</p>` : null}
      <form data-testid="api-key-form" onSubmit=${submit}>
        <label for="api-key">API key</label>
        <div class="row">
          <input id="api-key" ref=${input} type="password" autocomplete="current-password" required
            data-testid="api-key-input" value=${key} onInput=${(/** @type {InputEvent & { currentTarget: HTMLInputElement }} */ e) => setKey(e.currentTarget.value)} />
          <button type="submit" class="primary" data-testid="api-key-submit">Continue</button>
        </div>
      </form>
    </section>
  `
}

/** @param {{ route: Route }} props */
const Page = ({ route }) => {
  switch (route.name) {
    case "jobs":
      return html`<${JobsPage} />`
    case "job":
      return html`<${JobPage} key=${route.id} id=${route.id} />`
    case "new":
      return html`<${NewBatchPage} />`
    case "upstreams":
      return html`<${UpstreamsPage} />`
    case "missing":
      return html`<section class="card"><h1>Not found</h1><p>Nothing at <code>${route.path}</code>. <a href="#/">Back to the jobs</a>.</p></section>`
  }
}

const App = () => {
  const route = useRoute()
  const needsKey = useStore(keyRequired)
  // A new key remounts the page so everything it shows is read again with the key.
  const [generation, setGeneration] = useState(0)
  const main = useRef(/** @type {HTMLElement | null} */ (null))
  const firstRoute = useRef(true)
  useEffect(() => {
    document.title = `${titles[route.name]} · parallel-processor`
    // After a navigation (not the first load) keyboard and screen-reader users start at the new content.
    if (firstRoute.current) firstRoute.current = false
    else main.current?.focus()
  }, [route])
  return html`
    <a class="skip" href="#main" onClick=${(/** @type {MouseEvent} */ e) => { e.preventDefault(); main.current?.focus() }}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/">parallel-processor</a>
      <${Nav} route=${route} />
      <${ConnectionStatus} />
    </header>
    <main id="main" ref=${main} tabindex="-1">
      ${needsKey
        ? html`<${KeyPrompt} onSubmit=${() => setGeneration((n) => n + 1)} />`
        : html`<${Page} key=${generation} route=${route} />`}
    </main>
  `
}

const root = document.getElementById("app")
if (root !== null) {
  root.textContent = ""
  render(h(App, {}), root)
}
