/**
 * A headless Chromium for browser tests, with no manual setup step and no browser download.
 *
 * `chromiumBrowser` (or `Chromium.layer`) finds Debian's `chromium-headless-shell` (`CHROMIUM_PATH`
 * overrides the path), installing the package with apt-get when it is missing and the process runs as
 * root (as test/support/postgres.ts does for PostgreSQL: a fresh CI machine has Debian's registry but
 * no browser), and launches it with playwright-core for the lifetime of the scope. `openPage` gives a page in its own context that
 * records every console error or warning, uncaught page error and failed request, so a test can
 * assert that none happened; `screenshot` saves `test-results/dashboard/<name>.png` for a reviewer.
 *
 *   layer(Chromium.layer, { timeout: "120 seconds" })((it) => { ... const browser = yield* Chromium ... })
 *   const { page, assertClean } = yield* openPage(browser, { baseURL: url })
 *   yield* use("open the jobs list", () => page.goto("/"))
 */
import { Context, Data, Duration, Effect, Exit, Layer, Schedule, type Scope } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { chromium, type Browser, type Page } from "playwright-core"

export class BrowserError extends Data.TaggedError("BrowserError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const DEFAULT_PATH = "/usr/bin/chromium-headless-shell"
const PACKAGE = "chromium-headless-shell"
// The shell's only Recommends: without any font a fresh machine's screenshots show boxes instead of text.
const FONTS = "fonts-liberation"
const LAUNCH_TIMEOUT = Duration.seconds(60)
const CLOSE_TIMEOUT = Duration.seconds(15)

/** Flags for a container: no sandbox (root, no user namespaces), no GPU, nothing phoning home, /tmp not /dev/shm. */
const LAUNCH_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-dev-shm-usage"
]

/** Where screenshots go (git-ignored). */
export const screenshotDir = path.resolve(import.meta.dirname, "../../test-results/dashboard")

const isRoot = (): boolean => process.getuid?.() === 0

/** A playwright call as an Effect: its rejection (a TimeoutError names the locator and what it waited for) becomes a BrowserError. */
export const use = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, BrowserError> =>
  Effect.tryPromise({
    try: f,
    catch: (cause) => new BrowserError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  })

// ---------------------------------------------------------------------------------------------------
// Finding (or installing) the browser

/** execFile as an Effect: fails with the command's stderr tail, kills the child on interruption or timeout. */
const run = (file: string, args: ReadonlyArray<string>, timeout: Duration.DurationInput, env: NodeJS.ProcessEnv) => {
  const command = [file, ...args].join(" ")
  return Effect.async<void, BrowserError>((resume) => {
    const child = execFile(file, [...args], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env }, (error, stdout, stderr) => {
      if (error === null) return resume(Effect.void)
      const detail = (stderr.trim() || stdout.trim() || error.message).split("\n").slice(-15).join("\n")
      resume(Effect.fail(new BrowserError({ message: `\`${command}\` failed:\n${detail}`, cause: error })))
    })
    child.stdin?.end()
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGTERM")
    })
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new BrowserError({ message: `\`${command}\` did not finish within ${Duration.format(timeout)}` })
    })
  )
}

const isExecutable = (file: string) =>
  Effect.promise(() =>
    fs.access(file, fs.constants.X_OK).then(
      () => true,
      () => false
    )
  )

/** `apt-get install chromium-headless-shell` (root only). Exported so the install path can be exercised on its own. */
export const installDebianPackage: Effect.Effect<void, BrowserError> = Effect.gen(function* () {
  if (!isRoot()) {
    return yield* new BrowserError({
      message:
        `${DEFAULT_PATH} was not found and this process is not root, so it cannot be installed automatically. ` +
        `Install it (\`sudo apt-get install -y --no-install-recommends ${PACKAGE}\` on Debian/Ubuntu) ` +
        "or set CHROMIUM_PATH to a Chromium (headless shell or full) executable."
    })
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  // Another test worker (the PostgreSQL support, say) may hold the dpkg lock: wait for it instead of failing.
  const lock = ["-o", "DPkg::Lock::Timeout=600"]
  yield* Effect.logInfo(`browser test support: ${DEFAULT_PATH} not found; running \`apt-get update\``)
  // DPkg::Lock::Timeout covers dpkg's lock, not the package lists' one that a concurrent update holds: retry that.
  yield* run("apt-get", [...lock, "update"], "10 minutes", env).pipe(
    Effect.retry({
      while: (e) => /Could not get lock/i.test(e.message),
      schedule: Schedule.spaced(Duration.seconds(5)).pipe(Schedule.upTo(Duration.minutes(5)))
    })
  )
  yield* Effect.logInfo(
    `browser test support: running \`apt-get install -y --no-install-recommends ${PACKAGE} ${FONTS}\` (DEBIAN_FRONTEND=noninteractive)`
  )
  yield* run("apt-get", [...lock, "install", "-y", "--no-install-recommends", PACKAGE, FONTS], "15 minutes", env)
  yield* Effect.logInfo(`browser test support: package '${PACKAGE}' installed`)
})

/** The browser executable: `CHROMIUM_PATH` as given, else Debian's headless shell, installed (as root) when absent. */
export const findChromium: Effect.Effect<string, BrowserError> = Effect.gen(function* () {
  const override = process.env["CHROMIUM_PATH"]
  if (override !== undefined && override !== "") {
    if (yield* isExecutable(override)) return override
    return yield* new BrowserError({ message: `CHROMIUM_PATH=${override} is not an executable file` })
  }
  if (yield* isExecutable(DEFAULT_PATH)) return DEFAULT_PATH
  yield* installDebianPackage
  if (yield* isExecutable(DEFAULT_PATH)) return DEFAULT_PATH
  return yield* new BrowserError({ message: `Installed Debian package '${PACKAGE}' but ${DEFAULT_PATH} is still missing` })
})

// ---------------------------------------------------------------------------------------------------
// The browser and its pages

/** A launched Chromium for the lifetime of the scope (closed on release, whatever the test did). */
export const chromiumBrowser: Effect.Effect<Browser, BrowserError, Scope.Scope> = Effect.gen(function* () {
  const executablePath = yield* findChromium
  return yield* Effect.acquireRelease(
    use(`launch ${executablePath}`, () =>
      chromium.launch({ executablePath, args: LAUNCH_ARGS, timeout: Duration.toMillis(LAUNCH_TIMEOUT) })
    ).pipe(Effect.tap((browser) => Effect.logDebug(`browser test support: launched Chromium ${browser.version()}`))),
    (browser) =>
      use("close the browser", () => browser.close()).pipe(
        Effect.timeout(CLOSE_TIMEOUT),
        Effect.catchAll((e) => Effect.logWarning("browser test support: could not close the browser", e))
      )
  )
})

/** The browser as a service, for `layer(Chromium.layer)` from @effect/vitest or Effect.provide. */
export class Chromium extends Context.Tag("test/support/Chromium")<Chromium, Browser>() {
  static readonly layer: Layer.Layer<Chromium, BrowserError> = Layer.scoped(Chromium, chromiumBrowser)
}

export interface PageOptions {
  /** Relative `page.goto` targets resolve against it, e.g. the service's url. */
  readonly baseURL?: string
  /** Default 1280×800. */
  readonly viewport?: { readonly width: number; readonly height: number }
  /** Problems (see `WatchedPage.problems`) a test expects, e.g. the 401s before an API key is entered. */
  readonly allow?: ReadonlyArray<RegExp>
  /**
   * When the scope closes with a failure: the page as it was is saved as `FAILED-<name>.png` and its
   * console log is logged, so a timed-out wait shows what the page showed instead.
   */
  readonly name?: string
}

export interface WatchedPage {
  readonly page: Page
  /**
   * Console errors and warnings, uncaught page errors and failed requests so far, one line each,
   * minus the allowed ones. A request the page cancelled itself (`net::ERR_ABORTED`: an event stream
   * closed on leaving a job page) is not a failure.
   */
  readonly problems: () => ReadonlyArray<string>
  /** Every console message and page error, for a failing test's message. */
  readonly log: () => ReadonlyArray<string>
  /** Fails with every problem listed when there is any. */
  readonly assertClean: Effect.Effect<void, BrowserError>
}

/** A page in a fresh browser context (own cookies and storage), closed with the scope. */
export const openPage = (browser: Browser, options: PageOptions = {}): Effect.Effect<WatchedPage, BrowserError, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.acquireRelease(
      use("new browser context", () =>
        browser.newContext({
          viewport: options.viewport ?? { width: 1280, height: 800 },
          ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL })
        })
      ),
      (context) => use("close the browser context", () => context.close()).pipe(Effect.timeout(CLOSE_TIMEOUT), Effect.ignore)
    )
    const page = yield* use("new page", () => context.newPage())
    const problems: Array<string> = []
    const log: Array<string> = []
    const allowed = (line: string) => (options.allow ?? []).some((pattern) => pattern.test(line))
    const problem = (line: string) => {
      log.push(line)
      if (!allowed(line)) problems.push(line)
    }
    page.on("console", (message) => {
      const where = message.location().url
      const line = `console.${message.type()}: ${message.text()}${where === "" ? "" : ` (${where})`}`
      if (message.type() === "error" || message.type() === "warning") problem(line)
      else log.push(line)
    })
    page.on("pageerror", (error) => problem(`page error: ${error.stack ?? error.message}`))
    page.on("requestfailed", (request) => {
      const reason = request.failure()?.errorText ?? "unknown"
      const line = `request failed: ${request.method()} ${request.url()}: ${reason}`
      if (reason === "net::ERR_ABORTED") log.push(line)
      else problem(line)
    })
    if (options.name !== undefined) {
      const name = options.name
      yield* Effect.addFinalizer((exit) =>
        Exit.isSuccess(exit)
          ? Effect.void
          : screenshot(page, `FAILED-${name}`).pipe(
              Effect.flatMap((file) => Effect.logError(`browser test support: page at failure: ${file}\n${log.join("\n")}`)),
              Effect.timeout(CLOSE_TIMEOUT),
              Effect.ignore
            )
      )
    }
    return {
      page,
      problems: () => [...problems],
      log: () => [...log],
      assertClean: Effect.suspend(() =>
        problems.length === 0
          ? Effect.void
          : Effect.fail(new BrowserError({ message: `the page reported ${problems.length} problem(s):\n${problems.join("\n")}` }))
      )
    }
  })

/** A full-page screenshot at `test-results/dashboard/<name>.png`; returns the path. */
export const screenshot = (page: Page, name: string): Effect.Effect<string, BrowserError> => {
  const file = path.join(screenshotDir, `${name}.png`)
  return use(`screenshot ${name}`, () => page.screenshot({ path: file, fullPage: true })).pipe(Effect.as(file))
}
