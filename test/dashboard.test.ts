/**
 * The dashboard in a real browser: Debian's chromium-headless-shell driven by playwright-core against
 * the real service (a child process, SQLite in a temp DATA_DIR) calling an in-process sandbox whose
 * knobs slow or throttle the upstreams. One service serves the whole file (a start-up costs 10-25 s
 * on a loaded machine) and a second one with API_KEY set serves the key prompt's test; both start
 * at once with the file, next to the browser. Every test asserts the page logged no console error or
 * warning, threw nothing and had no request fail (but those its scenario causes, listed), and saves
 * a screenshot under test-results/dashboard/ for a reviewer. Waits are Playwright's auto-waiting
 * locators, or a poll of the page, with timeouts sized for a loaded 2-core CI machine; no fixed sleeps.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { Page } from "playwright-core"
import { JobAccepted } from "../src/domain/Batches.js"
import { JobDetail } from "../src/domain/Job.js"
import { ProcessorView } from "../src/domain/Operations.js"
import type { RouteKnobsPatch, RouteName } from "../src/sandbox/Knobs.js"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import { BrowserError, Chromium, openPage, screenshot, use, type PageOptions } from "./support/browser.js"
import { eventually, json, raw, rawJson, type RawResponse } from "./support/requests.js"
import * as Service from "./support/service.js"

/** Playwright's wait for any one thing on the page (ms). */
const T = 30_000

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-dashboard-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const serviceEnv = (sandboxUrl: string, dataDir: string, extra: Readonly<Record<string, string>> = {}) => ({
  ...Service.sandboxEnv(sandboxUrl),
  KOL_102_EMAIL: "kol102@example.com",
  KOL_102_PASSWORD: "pw-102",
  LLM_API_KEY: "sk-dashboard-test",
  NEWS_API_KEY: "news-dashboard-test",
  DATA_DIR: dataDir,
  SHUTDOWN_GRACE_PERIOD: "1 second",
  ...extra
})

/** A service process on a fresh data directory, calling the file's sandbox. */
const startService = (extra: Readonly<Record<string, string>> = {}) =>
  Effect.gen(function* () {
    const sandbox = yield* Sandbox.Sandbox
    const dataDir = yield* tempDir
    return yield* Service.start(serviceEnv(sandbox.url, dataDir, extra))
  })

/** The file's service (no API key). */
class Dashboard extends Context.Tag("test/Dashboard")<Dashboard, Service.ServiceProcess>() {}

const API_KEY = "dashboard-test-key"

/** A second service with API_KEY set, for the key prompt; started at the same time as the first. */
class KeyedDashboard extends Context.Tag("test/KeyedDashboard")<KeyedDashboard, Service.ServiceProcess>() {}

const env = Layer.mergeAll(
  Layer.scoped(Dashboard, startService()),
  Layer.scoped(KeyedDashboard, startService({ API_KEY })),
  Chromium.layer
).pipe(Layer.provideMerge(Sandbox.layer({ seed: 12 })))

const baseUrl = Effect.map(Dashboard, (s) => s.url)

// ---- the API, for setting up and checking what the page did ---------------------------------------

const expectStatus = (response: RawResponse, status: number) =>
  response.status === status
    ? Effect.succeed(response)
    : Effect.dieMessage(`expected HTTP ${status}, got ${response.status}: ${response.body}`)

const posts = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ postId: `${prefix}-p${i}`, articleId: `${prefix}-a${i}`, kolSerial: i % 2 === 0 ? "101" : "102" }))

/** POST a batch with `Prefer: respond-async` (to `url`, the file's service by default); the job's id. */
const submitInteractions = (body: unknown, headers: Readonly<Record<string, string>> = {}, url?: string) =>
  Effect.gen(function* () {
    const base = url ?? (yield* baseUrl)
    const response = yield* rawJson(`${base}/api/interactions/fetch-all-interactions`, "POST", body, { prefer: "respond-async", ...headers })
    yield* expectStatus(response, 202)
    return (yield* Schema.decodeUnknown(JobAccepted)(json(response))).id
  })

const getJob = (id: string) =>
  Effect.gen(function* () {
    const response = yield* raw(`${yield* baseUrl}/api/jobs/${id}?results=0`).pipe(Effect.flatMap((r) => expectStatus(r, 200)))
    return yield* Schema.decodeUnknown(JobDetail)(json(response))
  })

const processors = Effect.gen(function* () {
  const response = yield* raw(`${yield* baseUrl}/api/processors`).pipe(Effect.flatMap((r) => expectStatus(r, 200)))
  return yield* Schema.decodeUnknown(Schema.Array(ProcessorView))(json(response))
})

/** The route's knobs patched for the scope, then healthy again (the file's tests share the sandbox). */
const knobs = (route: RouteName, patch: RouteKnobsPatch) =>
  Effect.acquireRelease(
    Effect.flatMap(Sandbox.Sandbox, (s) => s.setKnobs(route, patch)),
    () =>
      Effect.flatMap(Sandbox.Sandbox, (s) =>
        s.setKnobs(route, { latency: { kind: "fixed", ms: 0 }, rateLimitRate: 0, retryAfter: { kind: "seconds", seconds: 1 } })
      )
  )

// ---- the page --------------------------------------------------------------------------------------

/**
 * A watched page on the file's service (closed with the test's scope); when the test fails, the
 * page's screenshot and console and the service's last log lines are kept.
 */
const dashboardPage = (name: string, options: PageOptions = {}) =>
  Effect.gen(function* () {
    const browser = yield* Chromium
    const service = yield* Dashboard
    yield* Effect.addFinalizer((exit) =>
      Exit.isSuccess(exit)
        ? Effect.void
        : Effect.logError(`dashboard test: the service's last lines:\n${service.output().split("\n").slice(-40).join("\n")}`)
    )
    return yield* openPage(browser, { baseURL: service.url, name, ...options })
  })

const visible = (page: Page, selector: string) =>
  use(`wait for ${selector}`, () => page.locator(selector).first().waitFor({ state: "visible", timeout: T }))

const tid = (id: string) => `[data-testid="${id}"]`

/** Waits until the element's text matches. */
const hasText = (page: Page, selector: string, text: RegExp) =>
  use(`wait for ${selector} to read ${String(text)}`, () =>
    page.locator(selector).filter({ hasText: text }).first().waitFor({ state: "visible", timeout: T })
  )

/** Waits until the job page's status badge reads exactly `status`. */
const jobStatus = (page: Page, status: string) => hasText(page, tid("job-status"), new RegExp(`^\\s*${status}\\s*$`))

/** The `data-index` of every result row on the page, in page order. */
const resultIndexes = (page: Page) =>
  use("read the result rows' indexes", () =>
    page.locator(tid("result-row")).evaluateAll((rows) => rows.map((row) => row.getAttribute("data-index")))
  ).pipe(Effect.map((indexes) => indexes.map(Number)))

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Evaluates a JavaScript expression in the page (as a string: tsconfig has no DOM lib) and decodes its value. */
const evaluate = <A, I>(page: Page, expression: string, schema: Schema.Schema<A, I>) =>
  use(`evaluate ${expression}`, () => page.evaluate<unknown>(expression)).pipe(Effect.flatMap(Schema.decodeUnknown(schema)))

/**
 * The page's requests for the job's events: the `Last-Event-ID` header (absent: undefined) of each,
 * in order, and how many were answered (their headers arrived).
 */
const eventRequests = (page: Page, id: string) => {
  const lastEventIds: Array<string | undefined> = []
  let answered = 0
  const isEvents = (url: string) => new URL(url).pathname === `/api/jobs/${id}/events`
  page.on("request", (request) => {
    if (isEvents(request.url())) lastEventIds.push(request.headers()["last-event-id"])
  })
  page.on("response", (response) => {
    if (isEvents(response.url())) answered++
  })
  return { lastEventIds, answered: () => answered }
}

/**
 * Waits until a row arrives through the open event stream: one more row than the page shows now,
 * with the stream answered. Rows the page read when it opened do not prove the stream is open, and
 * a connection cut before its response would be retried by Chromium unseen, testing nothing.
 */
const rowThroughStream = (page: Page, events: ReturnType<typeof eventRequests>) =>
  Effect.gen(function* () {
    const shown = (yield* resultIndexes(page)).length
    yield* use("wait for one more row", () => page.locator(tid("result-row")).nth(shown).waitFor({ state: "visible", timeout: T }))
    expect(events.answered()).toBeGreaterThanOrEqual(1)
  })

/**
 * Waits until the job page shows at least `atLeast` rows but not all, its bar neither empty nor full
 * (one look at the page).
 */
const partFinished = (page: Page, total: number, atLeast = 1) =>
  waitUntil(
    page,
    "wait for a part-finished job",
    `(() => {
      const bar = document.querySelector('[data-testid="job-progress"]')
      const percent = Number(bar && bar.getAttribute("data-percent"))
      const rows = document.querySelectorAll('[data-testid="result-row"]').length
      return percent > 0 && percent < 100 && rows >= ${atLeast} && rows < ${total}
    })()`
  )

/**
 * A TCP proxy on 127.0.0.1 (port 0) to the service at `target`, for the scope: `cut` destroys every
 * connection through it at once, as a network failure would; new connections are served again.
 */
const tcpProxy = (target: string) =>
  Effect.gen(function* () {
    const { hostname, port } = new URL(target)
    const sockets = new Set<net.Socket>()
    const track = (socket: net.Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
    const server = yield* Effect.acquireRelease(
      Effect.async<net.Server>((resume) => {
        const server = net.createServer((client) => {
          const upstream = net.connect(Number(port), hostname)
          track(client)
          track(upstream)
          client.pipe(upstream)
          upstream.pipe(client)
          client.on("close", () => upstream.destroy())
          upstream.on("close", () => client.destroy())
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        })
    )
    const address = server.address()
    const proxyPort = typeof address === "object" && address !== null ? address.port : 0
    return {
      url: `http://127.0.0.1:${proxyPort}`,
      cut: Effect.sync(() => {
        for (const socket of sockets) socket.destroy()
      })
    }
  })

/**
 * Polls a JavaScript expression in the page until it is true (Playwright's waitForFunction would
 * evaluate it with eval, which the page's Content-Security-Policy rightly forbids).
 */
const waitUntil = (page: Page, what: string, expression: string) =>
  evaluate(page, expression, Schema.Boolean).pipe(
    Effect.filterOrFail((ok) => ok, () => new BrowserError({ message: `${what}: still false after ${T} ms: ${expression}` })),
    Effect.retry({
      while: (e) => e._tag === "BrowserError" || e._tag === "ParseError",
      schedule: Schedule.spaced(Duration.millis(50)).pipe(Schedule.upTo(Duration.millis(T)))
    })
  )

layer(env, { timeout: "180 seconds", excludeTestServices: true })("dashboard in Chromium", (it) => {
  describe("pages", () => {
    it.scoped("the jobs list, new batch and upstreams pages load with no console errors", () =>
      Effect.gen(function* () {
        const { page, assertClean } = yield* dashboardPage("pages")
        yield* use("open /", () => page.goto("/"))
        for (const nav of ["nav-jobs", "nav-new", "nav-upstreams"]) yield* visible(page, tid(nav))
        yield* visible(page, tid("jobs-table"))
        yield* visible(page, tid("conn-status"))
        yield* screenshot(page, "01-jobs")

        yield* use("click nav-new", () => page.getByTestId("nav-new").click({ timeout: T }))
        yield* visible(page, tid("batch-submit"))
        const example = yield* use("read the example", () => page.getByTestId("batch-json").inputValue({ timeout: T }))
        expect(example.trim().length).toBeGreaterThan(2)
        yield* screenshot(page, "02-new-batch")

        yield* use("click nav-upstreams", () => page.getByTestId("nav-upstreams").click({ timeout: T }))
        for (const key of ["forum", "llm", "market", "news"]) yield* visible(page, `${tid("upstream-row")}[data-key="${key}"]`)
        yield* visible(page, `${tid("processor-row")}[data-name="interactions"]`)
        yield* visible(page, tid("chart-upstream-limit"))
        yield* visible(page, `${tid("breaker-row")}[data-key="forum"] ${tid("breaker-status")}`)
        yield* hasText(page, `${tid("instance-row")} ${tid("instance-alive")}`, /\S/)
        yield* screenshot(page, "03-upstreams")
        yield* assertClean
      }))
  })

  describe("a job", () => {
    it.scoped("a batch started from the form fills in its rows, the progress bar reaches 100% and the job completes", () =>
      Effect.gen(function* () {
        yield* knobs("interactions", { latency: { kind: "fixed", ms: 400 } })
        const { page, assertClean } = yield* dashboardPage("form-batch")
        yield* use("open #/new", () => page.goto("/#/new"))
        const items = posts("form", 16)
        yield* use("choose interactions", () => page.getByTestId("batch-kind").selectOption("interactions", { timeout: T }))
        yield* use("fill the posts", () => page.getByTestId("batch-json").fill(JSON.stringify(items, null, 2), { timeout: T }))
        yield* use("fill maxConcurrent", () => page.getByTestId("batch-maxConcurrent").fill("2", { timeout: T }))
        yield* use("submit", () => page.getByTestId("batch-submit").click({ timeout: T }))
        yield* use("wait for the job page", () => page.waitForURL(/#\/jobs\/[^/]+$/, { timeout: T }))
        const id = decodeURIComponent(new URL(page.url()).hash.replace(/^#\/jobs\//, ""))

        // Mid-run, in one look at the page: some rows but not all, the bar neither empty nor full.
        yield* partFinished(page, items.length, items.length / 4)
        yield* screenshot(page, "04-job-running")

        yield* visible(page, `${tid("job-progress")}[data-percent="100"]`)
        yield* jobStatus(page, "completed")
        yield* hasText(page, tid("job-counts"), /16/)
        expect(yield* resultIndexes(page)).toEqual(range(items.length))
        expect(yield* use("read the statuses", () => page.getByTestId("result-status").allInnerTexts())).toEqual(
          items.map(() => expect.stringMatching(/succeeded/))
        )
        yield* use("cancel is disabled", () =>
          page.locator(`${tid("job-cancel")}:disabled`).waitFor({ state: "visible", timeout: T })
        )
        // A chart has points once items have finished.
        yield* visible(page, tid("chart-completions"))
        yield* screenshot(page, "05-job-completed")

        yield* use("expand the first result", () => page.getByTestId("result-expand").first().click({ timeout: T }))
        yield* hasText(page, tid("result-value"), /\S/)
        yield* screenshot(page, "06-job-result-expanded")

        expect((yield* getJob(id)).status).toBe("completed")
        yield* use("back to the list", () => page.getByTestId("nav-jobs").click({ timeout: T }))
        const row = `${tid("job-row")}[data-job-id="${id}"]`
        yield* hasText(page, `${row} ${tid("job-status")}`, /completed/)
        // A job started elsewhere shows up without a reload; the kind filter hides what it does not match.
        const other = yield* submitInteractions({ posts: posts("elsewhere", 2) })
        yield* visible(page, `${tid("job-row")}[data-job-id="${other}"]`)
        yield* screenshot(page, "07-jobs-list")
        yield* use("filter intraday", () => page.getByTestId("filter-kind").selectOption("intraday_triggers", { timeout: T }))
        yield* use("wait for the row to go", () => page.locator(row).waitFor({ state: "detached", timeout: T }))
        yield* use("filter interactions", () => page.getByTestId("filter-kind").selectOption("interactions", { timeout: T }))
        yield* visible(page, row)
        yield* assertClean
      }))

    it.scoped("Cancel on a running job stops it and the page shows cancelled", () =>
      Effect.gen(function* () {
        yield* knobs("interactions", { latency: { kind: "fixed", ms: 5_000 } })
        const id = yield* submitInteractions({ posts: posts("cancel", 6), maxConcurrent: 1 })
        const { page, assertClean } = yield* dashboardPage("cancel")
        yield* use("open the job", () => page.goto(`/#/jobs/${id}`))
        yield* jobStatus(page, "running")
        yield* use("click Cancel", () => page.locator(`${tid("job-cancel")}:enabled`).click({ timeout: T }))
        yield* jobStatus(page, "cancelled")
        yield* use("cancel is disabled", () =>
          page.locator(`${tid("job-cancel")}:disabled`).waitFor({ state: "visible", timeout: T })
        )
        yield* hasText(page, tid("job-counts"), /cancelled/i)
        yield* screenshot(page, "08-job-cancelled")
        const job = yield* getJob(id)
        expect(job.status).toBe("cancelled")
        // 5 s a call, one at a time: at most the first one or two finished before the click.
        expect(job.cancelled).toBeGreaterThanOrEqual(4)
        yield* assertClean
      }))

    it.scoped("the browser going offline mid-job: the page says so, then resumes with every index exactly once", () =>
      Effect.gen(function* () {
        yield* knobs("interactions", { latency: { kind: "fixed", ms: 500 } })
        const items = posts("offline", 24)
        const id = yield* submitInteractions({ posts: items, maxConcurrent: 2 })
        // Offline, the page's polls fail: expected here, nothing else is.
        const { page, assertClean } = yield* dashboardPage("offline", { allow: [/ERR_INTERNET_DISCONNECTED/] })
        const events = eventRequests(page, id)
        yield* use("open the job", () => page.goto(`/#/jobs/${id}`))
        yield* partFinished(page, items.length)
        yield* rowThroughStream(page, events)
        yield* use("go offline", () => page.context().setOffline(true))
        yield* hasText(page, tid("conn-status"), /reconnecting|offline/i)
        yield* screenshot(page, "09-job-offline")
        // Items keep finishing meanwhile; the page hears of them only after it is back.
        yield* use("go online", () => page.context().setOffline(false))
        yield* jobStatus(page, "completed")
        yield* visible(page, `${tid("job-progress")}[data-percent="100"]`)
        yield* hasText(page, tid("conn-status"), /live/i)
        expect(yield* resultIndexes(page)).toEqual(range(items.length))
        expect(events.lastEventIds.length).toBeGreaterThanOrEqual(2)
        expect(events.lastEventIds.slice(1).some((lastEventId) => lastEventId !== undefined && /^\d+$/.test(lastEventId))).toBe(true)
        yield* screenshot(page, "10-job-resumed-after-offline")
        yield* assertClean
      }))

    it.scoped("the event stream cut by the network mid-job: the page reconnects with Last-Event-ID, every index exactly once", () =>
      Effect.gen(function* () {
        yield* knobs("interactions", { latency: { kind: "fixed", ms: 500 } })
        const items = posts("cut", 24)
        const id = yield* submitInteractions({ posts: items, maxConcurrent: 2 })
        const proxy = yield* tcpProxy(yield* baseUrl)
        const browser = yield* Chromium
        // The cut fails the open stream (and whatever else was in flight through the proxy).
        const { page, assertClean } = yield* openPage(browser, {
          baseURL: proxy.url,
          name: "cut",
          allow: [
            /Failed to load resource: net::ERR_[A-Z_]+ \(http:\/\/127\.0\.0\.1:\d+\/api\//,
            /request failed: GET http:\/\/127\.0\.0\.1:\d+\/api\/\S+: net::ERR_[A-Z_]+$/
          ]
        })
        const events = eventRequests(page, id)
        yield* use("open the job", () => page.goto(`/#/jobs/${id}`))
        yield* partFinished(page, items.length)
        yield* rowThroughStream(page, events)
        const seenBeforeCut = (yield* resultIndexes(page)).length
        yield* proxy.cut
        yield* jobStatus(page, "completed")
        yield* visible(page, `${tid("job-progress")}[data-percent="100"]`)
        expect(yield* resultIndexes(page)).toEqual(range(items.length))
        expect(seenBeforeCut).toBeLessThan(items.length)
        expect(events.lastEventIds.length).toBeGreaterThanOrEqual(2)
        expect(events.lastEventIds.slice(1).some((lastEventId) => lastEventId !== undefined && /^\d+$/.test(lastEventId))).toBe(true)
        yield* screenshot(page, "11-job-resumed-after-cut")
        yield* assertClean
      }))

    it.scoped("a job page at phone width (375×740) does not scroll sideways", () =>
      Effect.gen(function* () {
        const id = yield* submitInteractions({ posts: posts("phone", 6) })
        const { page, assertClean } = yield* dashboardPage("phone", { viewport: { width: 375, height: 740 } })
        yield* use("open the job", () => page.goto(`/#/jobs/${id}`))
        yield* jobStatus(page, "completed")
        yield* visible(page, `${tid("result-row")}[data-index="5"]`)
        const overflow = yield* evaluate(page, "document.body.scrollWidth - document.documentElement.clientWidth", Schema.Number)
        expect(overflow).toBeLessThanOrEqual(0)
        yield* screenshot(page, "12-job-phone")
        yield* assertClean
      }))
  })

  describe("forms and settings", () => {
    it.scoped("a 400 shows the server's message next to the field (maxConcurrent 0)", () =>
      Effect.gen(function* () {
        // The browser logs the 400 it was answered: that one is expected.
        const { page, assertClean } = yield* dashboardPage("field-error", { allow: [/status of 400/] })
        yield* use("open #/new", () => page.goto("/#/new"))
        yield* use("choose interactions", () => page.getByTestId("batch-kind").selectOption("interactions", { timeout: T }))
        yield* use("fill maxConcurrent 0", () => page.getByTestId("batch-maxConcurrent").fill("0", { timeout: T }))
        yield* use("submit", () => page.getByTestId("batch-submit").click({ timeout: T }))
        const error = page.locator(`${tid("field-error")}[data-field="maxConcurrent"]`)
        yield* visible(page, `${tid("field-error")}[data-field="maxConcurrent"]`)
        const shown = yield* use("read the field error", () => error.innerText({ timeout: T }))
        // The same request straight to the API: the page shows the service's own words.
        const direct = yield* rawJson(`${yield* baseUrl}/api/interactions/fetch-all-interactions`, "POST", {
          posts: posts("bad", 1),
          maxConcurrent: 0
        })
        yield* expectStatus(direct, 400)
        const message = yield* Schema.decodeUnknown(Schema.Struct({ message: Schema.String }))(json(direct))
        expect(shown.trim().length).toBeGreaterThan(0)
        expect(message.message).toContain(shown.trim())
        expect(page.url()).toMatch(/#\/new$/)
        yield* screenshot(page, "13-new-batch-400")
        yield* assertClean
      }))

    it.scoped("a processor default changed on the upstreams page is PATCHed (GET /api/processors shows it)", () =>
      Effect.gen(function* () {
        const before = (yield* processors).find((p) => p.name === "interactions")
        expect(before).toBeDefined()
        const target = before?.maxConcurrent === 7 ? 6 : 7
        yield* Effect.addFinalizer(() =>
          Effect.gen(function* () {
            const url = yield* baseUrl
            yield* rawJson(`${url}/api/processors/interactions`, "PATCH", { maxConcurrent: before?.maxConcurrent ?? 5 })
          }).pipe(Effect.ignore)
        )
        const { page, assertClean } = yield* dashboardPage("processor")
        yield* use("open #/upstreams", () => page.goto("/#/upstreams"))
        const row = page.locator(`${tid("processor-row")}[data-name="interactions"]`)
        yield* use("fill maxConcurrent", () => row.getByTestId("processor-maxConcurrent").fill(String(target), { timeout: T }))
        yield* use("save", () => row.getByTestId("processor-save").click({ timeout: T }))
        yield* use("wait for Saved", () => row.getByRole("status").filter({ hasText: /saved/i }).waitFor({ state: "visible", timeout: T }))
        yield* eventually(
          Effect.flatMap(processors, (all) =>
            all.find((p) => p.name === "interactions")?.maxConcurrent === target ? Effect.void : Effect.fail("not yet")
          ),
          "30 seconds"
        )
        // A fresh load shows the new default.
        yield* use("reload", () => page.reload())
        yield* waitUntil(
          page,
          "wait for the new value in the input",
          `(() => {
            const input = document.querySelector('[data-testid="processor-row"][data-name="interactions"] [data-testid="processor-maxConcurrent"]')
            return input !== null && input.value === "${target}"
          })()`
        )
        yield* screenshot(page, "14-processor-patched")
        yield* assertClean
      }))

    it.scoped("an upstream answering 429 with Retry-After shows a cooldown countdown", () =>
      Effect.gen(function* () {
        yield* knobs("screen", { rateLimitRate: 1, retryAfter: { kind: "seconds", seconds: 20 } })
        const base = yield* baseUrl
        const accepted = yield* rawJson(`${base}/api/intraday/parallel/execute-multiple?maxConcurrent=2`, "POST", [
          { triggerKey: "limit_up" },
          { triggerKey: "volume_surge" }
        ], { prefer: "respond-async" }).pipe(Effect.flatMap((r) => expectStatus(r, 202)))
        const id = (yield* Schema.decodeUnknown(JobAccepted)(json(accepted))).id
        yield* Effect.addFinalizer(() => raw(`${base}/api/jobs/${id}`, { method: "DELETE" }).pipe(Effect.ignore))
        const { page, assertClean } = yield* dashboardPage("cooldown")
        yield* use("open #/upstreams", () => page.goto("/#/upstreams"))
        const cooldown = `${tid("upstream-row")}[data-key="market"] ${tid("upstream-cooldown")}`
        yield* hasText(page, cooldown, /\d+(\.\d+)?\s*s/)
        const first = yield* use("read the cooldown", () => page.locator(cooldown).innerText({ timeout: T }))
        // It counts down.
        yield* use("wait for the countdown to move", () =>
          page.locator(cooldown).filter({ hasNotText: first }).filter({ hasText: /\d/ }).waitFor({ state: "visible", timeout: T })
        )
        yield* screenshot(page, "15-upstream-cooldown")
        yield* assertClean
      }))
  })

  describe("access", () => {
    it.scoped("with API_KEY set the page asks for the key, then lists the jobs", () =>
      Effect.gen(function* () {
        const key = API_KEY
        const keyed = yield* KeyedDashboard
        const id = yield* submitInteractions({ posts: posts("keyed", 2) }, { "x-api-key": key }, keyed.url)
        const browser = yield* Chromium
        // Until the key is entered the API answers 401, and the browser logs each one.
        const { page, assertClean } = yield* openPage(browser, { baseURL: keyed.url, name: "api-key", allow: [/status of 401/] })
        yield* use("open /", () => page.goto("/"))
        yield* visible(page, tid("api-key-form"))
        yield* screenshot(page, "16-api-key-prompt")
        // A wrong key is answered 401 again: the prompt stays.
        yield* use("enter a wrong key", () => page.getByTestId("api-key-input").fill("not-the-key", { timeout: T }))
        const refused = use("wait for a 401", () => page.waitForResponse(
            (response) => response.status() === 401 && response.request().headers()["authorization"] === "Bearer not-the-key",
            { timeout: T }
          ))
        yield* Effect.zip(refused, use("submit the wrong key", () => page.getByTestId("api-key-submit").click({ timeout: T })), {
          concurrent: true
        })
        yield* visible(page, tid("api-key-form"))
        yield* use("enter the key", () => page.getByTestId("api-key-input").fill(key, { timeout: T }))
        yield* use("submit the key", () => page.getByTestId("api-key-submit").click({ timeout: T }))
        yield* visible(page, `${tid("job-row")}[data-job-id="${id}"]`)
        yield* screenshot(page, "17-api-key-accepted")
        // Kept for the tab's session: a reload does not ask again.
        yield* use("reload", () => page.reload())
        yield* visible(page, `${tid("job-row")}[data-job-id="${id}"]`)
        expect(yield* use("count key forms", () => page.getByTestId("api-key-form").count())).toBe(0)
        yield* assertClean
      }))
  })

  describe("keyboard", () => {
    it.scoped("Tab reaches the navigation links and the form's submit button", () =>
      Effect.gen(function* () {
        const { page, assertClean } = yield* dashboardPage("keyboard")
        const focused = evaluate(
          page,
          `document.activeElement === null ? "" : (document.activeElement.getAttribute("data-testid") ?? "")`,
          Schema.String
        )
        /** Presses Tab until `testid` has the focus (at most `max` times); the testids passed on the way. */
        const tabTo = (testid: string, max: number) =>
          Effect.gen(function* () {
            const seen: Array<string> = []
            for (let i = 0; i < max; i++) {
              yield* use("press Tab", () => page.keyboard.press("Tab"))
              const now = yield* focused
              seen.push(now)
              if (now === testid) return seen
            }
            return yield* Effect.dieMessage(`Tab never reached ${testid} in ${max} presses; focus went ${seen.join(" → ")}`)
          })
        yield* use("open /", () => page.goto("/"))
        yield* visible(page, tid("jobs-table"))
        const passed = yield* tabTo("nav-upstreams", 20)
        expect(passed).toEqual(expect.arrayContaining(["nav-jobs", "nav-new", "nav-upstreams"]))

        yield* use("open #/new", () => page.goto("/#/new"))
        yield* visible(page, tid("batch-submit"))
        yield* use("focus the page", () => page.locator("body").focus())
        yield* tabTo("batch-submit", 40)
        yield* screenshot(page, "18-keyboard-submit-focused")
        // Enter on a focused nav link follows it.
        yield* use("open /", () => page.goto("/"))
        yield* visible(page, tid("jobs-table"))
        yield* tabTo("nav-upstreams", 20)
        yield* use("press Enter", () => page.keyboard.press("Enter"))
        yield* visible(page, tid("upstreams-table"))
        yield* assertClean
      }))
  })
})
