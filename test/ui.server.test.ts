/**
 * The dashboard's server side: the page, its files and the vendor modules served by the service
 * itself (content types, ETag/304, the Content-Security-Policy, no way out of `ui/`, no API key
 * needed while `/api/*` still asks for one), and the two routes only the page uses —
 * `/api/instances` and `/api/upstreams/history`. Against a real service on 127.0.0.1 (port 0), with
 * `UI_DIR` pointing at a temporary directory so the checks do not depend on the page's own files;
 * the sampler's timing and its ring are checked under the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Schema, TestClock } from "effect"
import * as fc from "effect/FastCheck"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { InstanceView, UpstreamHistoryView } from "../src/http/Api.js"
import * as Ui from "../src/http/Ui.js"
import * as UpstreamHistory from "../src/http/UpstreamHistory.js"
import { eventually, HttpFailure, json, raw, Service, serviceLayer } from "./support/http.js"

const root = path.resolve(import.meta.dirname, "..")

const importMap = '{"imports":{"preact":"/ui/vendor/preact.js","preact/hooks":"/ui/vendor/hooks.js","htm":"/ui/vendor/htm.js","uplot":"/ui/vendor/uPlot.js"}}'
const indexHtml = `<!doctype html>
<html><head><meta charset="utf-8"><title>t</title>
<link rel="stylesheet" href="/ui/style.css">
<script type="importmap">${importMap}</script>
<script type="module" src="/ui/app.js"></script>
</head><body><div id="app"></div></body></html>
`

/** A `ui/` of our own: a page, a script, a stylesheet in a subdirectory, a dotfile and a symlink out. */
const uiDir = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pp-ui-"))
    const ui = path.join(dir, "ui")
    fs.mkdirSync(path.join(ui, "css"), { recursive: true })
    fs.writeFileSync(path.join(ui, "index.html"), indexHtml)
    fs.writeFileSync(path.join(ui, "app.js"), 'import { h } from "preact"\nexport default h\n')
    fs.writeFileSync(path.join(ui, "css", "style.css"), "body { margin: 0 }\n")
    fs.writeFileSync(path.join(ui, ".secret.js"), "secret\n")
    fs.writeFileSync(path.join(ui, "notes.ts"), "const x = 1\n")
    fs.writeFileSync(path.join(dir, "outside.js"), "outside\n")
    fs.symlinkSync(path.join(dir, "outside.js"), path.join(ui, "link.js"))
    return ui
  }),
  (ui) => Effect.sync(() => fs.rmSync(path.dirname(ui), { recursive: true, force: true }))
)

const withUi = <A, E>(self: Effect.Effect<A, E, Service>, env: Readonly<Record<string, string>> = {}) =>
  Effect.scoped(Effect.flatMap(uiDir, (ui) => Effect.provide(self, serviceLayer({ env: { UI_DIR: ui, ...env } }))))

const url = Effect.map(Service, (s) => s.url)

/** A GET with the path sent exactly as given (fetch would resolve `..` before sending). */
const rawPath = (base: string, requestPath: string) =>
  Effect.async<{ readonly status: number; readonly body: string }, HttpFailure>((resume) => {
    const { hostname, port } = new URL(base)
    const request = http.get({ host: hostname, port, path: requestPath }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (c: Buffer) => chunks.push(c))
      response.on("end", () =>
        resume(Effect.succeed({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
      )
    })
    request.on("error", (error) => resume(Effect.fail(new HttpFailure({ message: `GET ${requestPath}: ${String(error)}` }))))
    return Effect.sync(() => void request.destroy())
  })

const sha256 = (text: string) => createHash("sha256").update(text).digest("base64")

describe("the dashboard's files", () => {
  it.live("/ and /index.html serve the page with its import map, under a CSP that admits the import map by hash", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        for (const p of ["/", "/index.html", "/ui/index.html"]) {
          const page = yield* raw(`${base}${p}`)
          expect(page.status).toBe(200)
          expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8")
          expect(page.body).toBe(indexHtml)
          expect(page.body).toContain('<script type="importmap">')
          expect(page.headers.get("cache-control")).toBe("no-cache")
          const csp = page.headers.get("content-security-policy") ?? ""
          expect(csp).toContain("default-src 'self'")
          expect(csp).toContain(`script-src 'self' 'sha256-${sha256(importMap)}'`)
          expect(csp).not.toContain("unsafe-inline")
          expect(csp).toContain("connect-src 'self'")
        }
        const script = yield* raw(`${base}/ui/app.js`)
        expect(script.status).toBe(200)
        expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
        expect(script.headers.get("content-security-policy")).toBeNull()
        const style = yield* raw(`${base}/ui/css/style.css?v=2`)
        expect(style.status).toBe(200)
        expect(style.headers.get("content-type")).toBe("text/css; charset=utf-8")
      })
    ), 60_000)

  it.live("the vendor modules come from node_modules with their content types", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        const expected: ReadonlyArray<readonly [string, string, string]> = [
          ["/ui/vendor/preact.js", "node_modules/preact/dist/preact.module.js", "text/javascript; charset=utf-8"],
          ["/ui/vendor/hooks.js", "node_modules/preact/hooks/dist/hooks.module.js", "text/javascript; charset=utf-8"],
          ["/ui/vendor/htm.js", "node_modules/htm/dist/htm.module.js", "text/javascript; charset=utf-8"],
          ["/ui/vendor/uPlot.js", "node_modules/uplot/dist/uPlot.esm.js", "text/javascript; charset=utf-8"],
          ["/ui/vendor/uPlot.css", "node_modules/uplot/dist/uPlot.min.css", "text/css; charset=utf-8"]
        ]
        for (const [p, file, type] of expected) {
          const r = yield* raw(`${base}${p}`)
          expect(r.status, p).toBe(200)
          expect(r.headers.get("content-type"), p).toBe(type)
          expect(r.body, p).toBe(fs.readFileSync(path.join(root, file), "utf8"))
        }
      })
    ), 60_000)

  it.live("an ETag answers 304 on If-None-Match, and 200 once it no longer matches", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        for (const p of ["/", "/ui/app.js", "/ui/vendor/preact.js"]) {
          const first = yield* raw(`${base}${p}`)
          const etag = first.headers.get("etag") ?? ""
          expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/)
          const again = yield* raw(`${base}${p}`, { headers: { "if-none-match": etag } })
          expect(again.status, p).toBe(304)
          expect(again.body).toBe("")
          expect(again.headers.get("etag")).toBe(etag)
          const listed = yield* raw(`${base}${p}`, { headers: { "if-none-match": `"other", W/${etag}` } })
          expect(listed.status, p).toBe(304)
          const stale = yield* raw(`${base}${p}`, { headers: { "if-none-match": '"stale"' } })
          expect(stale.status, p).toBe(200)
        }
        // Another file, another tag.
        const a = yield* raw(`${base}/ui/app.js`)
        const b = yield* raw(`${base}/ui/css/style.css`)
        expect(a.headers.get("etag")).not.toBe(b.headers.get("etag"))
      })
    ), 60_000)

  it.live("nothing outside ui/ is reachable: traversal, encoded or not, symlinks out, dotfiles, unknown files are 404", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        const attempts = [
          "/ui/../package.json",
          "/ui/%2e%2e/package.json",
          "/ui/%2E%2E%2Fpackage.json",
          "/ui/..%2f..%2fpackage.json",
          "/ui/..%5cpackage.json",
          "/ui/vendor/../../package.json",
          "/ui/vendor/%2e%2e/%2e%2e/package.json",
          "/ui//etc/passwd",
          "/ui/%2fetc%2fpasswd",
          `/ui/${encodeURIComponent(path.join(root, "package.json"))}`,
          "/ui/link.js",
          "/ui/.secret.js",
          "/ui/notes.ts",
          "/ui/nope.js",
          "/ui/",
          "/ui/%zz",
          "/ui/app.js%00.html",
          "/../package.json",
          "/package.json"
        ]
        for (const attempt of attempts) {
          const r = yield* rawPath(base, attempt)
          expect(r.status, attempt).toBe(404)
          expect(r.body, attempt).not.toContain("outside")
          expect(r.body, attempt).not.toContain("secret\n")
          expect(r.body, attempt).not.toContain('"name": "parallel-processor"')
        }
      })
    ), 60_000)

  it.live("with API_KEY set, the page and its files need no key while /api/* still answers 401 without one", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        for (const p of ["/", "/ui/app.js", "/ui/vendor/preact.js"]) {
          expect((yield* raw(`${base}${p}`)).status, p).toBe(200)
        }
        for (const p of ["/api/jobs", "/api/instances", "/api/upstreams/history", "/api/upstreams"]) {
          expect((yield* raw(`${base}${p}`)).status, p).toBe(401)
          expect((yield* raw(`${base}${p}`, { headers: { authorization: "Bearer k-123" } })).status, p).toBe(200)
          expect((yield* raw(`${base}${p}`, { headers: { "x-api-key": "k-123" } })).status, p).toBe(200)
        }
      }),
      { API_KEY: "k-123" }
    ), 60_000)

  it.live("without UI_DIR the project's own ui/ is served (found from the module's location)", () =>
    Effect.gen(function* () {
      const base = yield* url
      const page = yield* raw(`${base}/`)
      expect(page.status).toBe(200)
      expect(page.body).toBe(fs.readFileSync(path.join(root, "ui", "index.html"), "utf8"))
      expect(page.body).toContain('<script type="importmap">')
      expect((yield* raw(`${base}/ui/app.js`)).status).toBe(200)
    }).pipe(Effect.provide(serviceLayer())), 60_000)
})

describe("the dashboard's files, missing", () => {
  it.live("a UI_DIR that does not exist costs the page (404), not the service", () =>
    Effect.gen(function* () {
      const base = yield* url
      expect((yield* raw(`${base}/`)).status).toBe(404)
      expect((yield* raw(`${base}/ui/app.js`)).status).toBe(404)
      expect((yield* raw(`${base}/ui/vendor/preact.js`)).status).toBe(200)
      expect((yield* raw(`${base}/api/instances`)).status).toBe(200)
    }).pipe(Effect.provide(serviceLayer({ env: { UI_DIR: path.join(os.tmpdir(), "pp-ui-does-not-exist") } }))), 60_000)
})

describe("the dashboard's API", () => {
  it.live("GET /api/instances alone on the embedded database: this process, alive; both routes in /openapi.json", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        const r = yield* raw(`${base}/api/instances`)
        expect(r.status).toBe(200)
        const instances = yield* Schema.decodeUnknown(Schema.Array(InstanceView))(json(r))
        expect(instances).toHaveLength(1)
        const [me] = instances
        expect(me).toMatchObject({ id: "local", alive: true, self: true })
        expect(Date.parse(me?.startedAt ?? "")).toBeLessThanOrEqual(Date.parse(me?.lastSeen ?? ""))
        expect(Math.abs(Date.now() - Date.parse(me?.lastSeen ?? ""))).toBeLessThan(5_000)
        // Both routes the page uses are in the published contract.
        const spec = json(yield* raw(`${base}/openapi.json`))
        expect(spec).toMatchObject({ paths: { "/api/instances": { get: {} }, "/api/upstreams/history": { get: {} } } })
      })
    ), 60_000)

  it.live("GET /api/upstreams/history fills every UPSTREAM_HISTORY_INTERVAL with every upstream's budget", () =>
    withUi(
      Effect.gen(function* () {
        const base = yield* url
        const history = yield* eventually(
          raw(`${base}/api/upstreams/history`).pipe(
            Effect.flatMap((r) => Schema.decodeUnknown(UpstreamHistoryView)(json(r))),
            Effect.filterOrFail((h) => h.samples.length >= 4, () => "not yet")
          ),
          "10 seconds"
        )
        expect(history.intervalMs).toBe(50)
        const times = history.samples.map((s) => Date.parse(s.at))
        expect(times).toEqual([...times].sort((a, b) => a - b))
        for (const sample of history.samples) {
          expect(sample.upstreams.map((u) => u.key)).toEqual(["forum", "llm", "market", "news"])
          for (const u of sample.upstreams) {
            expect(u.limit).toBeGreaterThanOrEqual(1)
            expect(u.limit).toBeLessThanOrEqual(u.ceiling)
          }
        }
        // A changed ceiling shows in the samples that follow.
        const patched = yield* raw(`${base}/api/upstreams/llm`, {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ceiling: 7, adaptive: false })
        })
        expect(patched.status).toBe(200)
        yield* eventually(
          raw(`${base}/api/upstreams/history`).pipe(
            Effect.flatMap((r) => Schema.decodeUnknown(UpstreamHistoryView)(json(r))),
            Effect.filterOrFail(
              (h) => h.samples.at(-1)?.upstreams.find((u) => u.key === "llm")?.ceiling === 7,
              () => "not yet"
            )
          ),
          "10 seconds"
        )
      }),
      { UPSTREAM_HISTORY_INTERVAL: "50 millis" }
    ), 60_000)
})

describe("the upstream history sampler", () => {
  const point = (n: number) => [{ key: "forum", limit: n, ceiling: 5, inFlight: 0, waiting: 0, throttled: 0 }]

  it.effect("samples at once and then every interval, keeping the last `capacity` samples, oldest first", () =>
    Effect.scoped(
      Effect.gen(function* () {
        let reads = 0
        const history = yield* UpstreamHistory.make({
          read: Effect.sync(() => point(++reads)),
          interval: Duration.seconds(2),
          capacity: 5
        })
        yield* TestClock.adjust(0)
        expect((yield* history.samples).map((s) => s.at)).toEqual([0])
        yield* TestClock.adjust("2 seconds")
        yield* TestClock.adjust("2 seconds")
        expect((yield* history.samples).map((s) => s.at)).toEqual([0, 2000, 4000])
        yield* TestClock.adjust("20 seconds")
        const kept = yield* history.samples
        expect(kept.map((s) => s.at)).toEqual([16_000, 18_000, 20_000, 22_000, 24_000])
        expect(kept.map((s) => s.upstreams[0]?.limit)).toEqual([9, 10, 11, 12, 13])
        const view = yield* history.view
        expect(view.intervalMs).toBe(2000)
        expect(view.samples[0]?.at).toBe(new Date(16_000).toISOString())
      })
    ))

  it.effect("a failing read leaves a gap, not a dead sampler; closing the scope stops it", () =>
    Effect.gen(function* () {
      let reads = 0
      const read = Effect.suspend(() => (++reads === 2 ? Effect.die("boom") : Effect.succeed(point(reads))))
      const kept = yield* Effect.scoped(
        Effect.gen(function* () {
          const history = yield* UpstreamHistory.make({ read, interval: Duration.seconds(2) })
          yield* TestClock.adjust("6 seconds")
          return (yield* history.samples).map((s) => s.at)
        })
      )
      expect(kept).toEqual([0, 4000, 6000])
      const before = reads
      yield* TestClock.adjust("10 seconds")
      expect(reads).toBe(before)
    }))

  it.prop(
    "the ring holds the last min(n, capacity) pushes in order",
    [fc.integer({ min: 1, max: 20 }), fc.array(fc.integer(), { maxLength: 80 })],
    ([capacity, pushes]) => {
      const ring = UpstreamHistory.ring<number>(capacity)
      for (const p of pushes) ring.push(p)
      expect(ring.toArray()).toEqual(pushes.slice(Math.max(0, pushes.length - capacity)))
    }
  )
})

describe("the page's policy and validators", () => {
  it("hashes every inline script and style, never one loaded by src", () => {
    const html = `<style>a{}</style><script type="importmap">{"imports":{}}</script><script src="/ui/x.js"></script><script>1</script>`
    const csp = Ui.contentSecurityPolicy(html)
    expect(csp).toContain(`script-src 'self' 'sha256-${sha256('{"imports":{}}')}' 'sha256-${sha256("1")}';`)
    expect(csp).toContain(`style-src 'self' 'sha256-${sha256("a{}")}';`)
    expect(Ui.contentSecurityPolicy("<p>no scripts</p>")).toContain("script-src 'self';")
  })

  it("If-None-Match: exact, weak, listed or * match; anything else does not", () => {
    expect(Ui.matches('"a"', '"a"')).toBe(true)
    expect(Ui.matches('W/"a"', '"a"')).toBe(true)
    expect(Ui.matches('"b", "a"', '"a"')).toBe(true)
    expect(Ui.matches("*", '"a"')).toBe(true)
    expect(Ui.matches('"b"', '"a"')).toBe(false)
    expect(Ui.matches(undefined, '"a"')).toBe(false)
  })
})
