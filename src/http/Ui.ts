/**
 * The dashboard's files: `/` (and `/index.html`) is `ui/index.html`, `/ui/<file>` a file under `ui/`,
 * and `/ui/vendor/*` the few browser libraries it imports, served from `node_modules` (no CDN, no
 * bundler). None of it needs the API key: the files hold no data, the page asks for the key and
 * sends it on its `/api/*` calls.
 *
 * Every file is read once, when the service starts, and served from memory: a request never touches
 * the disk (the API is not slowed by the page), and only the files found then can be answered — a
 * path is looked up, never joined onto a directory, so `..`, encoded or not, cannot leave `ui/`. A
 * change to `ui/` is seen after a restart. Responses carry a strong ETag (`If-None-Match` → 304) and
 * `Cache-Control: no-cache` (revalidated on every load, so an upgrade shows at once); the page gets a
 * Content-Security-Policy allowing only this origin, plus the hashes of its inline scripts and styles
 * (the import map is inline: browsers do not load one from a file) — no 'unsafe-inline'.
 */
import { FileSystem, HttpApiBuilder, HttpServerRequest, HttpServerResponse, Path } from "@effect/platform"
import { Config, Effect, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

export interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
  /** Only on the HTML page: the policy is the document's. */
  readonly csp: string | undefined
}

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8"
}

/** URL under `/ui/vendor/` → package and file inside it (the packages' `exports` hide these paths). */
export const vendorFiles: ReadonlyArray<readonly [url: string, pkg: string, file: string]> = [
  ["/ui/vendor/preact.js", "preact", "dist/preact.module.js"],
  ["/ui/vendor/hooks.js", "preact", "hooks/dist/hooks.module.js"],
  ["/ui/vendor/htm.js", "htm", "dist/htm.module.js"],
  ["/ui/vendor/uPlot.js", "uplot", "dist/uPlot.esm.js"],
  ["/ui/vendor/uPlot.css", "uplot", "dist/uPlot.min.css"]
]

/** A whole `ui/` directory pointed at the wrong place (`UI_DIR=/`) is not read into memory. */
const MAX_FILES = 500
const MAX_FILE_BYTES = 4 * 1024 * 1024

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("base64")

const etagOf = (body: Uint8Array) => `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`

/**
 * The policy for the page: everything from this origin only; inline `<script>`s (the import map)
 * and `<style>`s by hash. An inline `style="…"` attribute or event handler in the HTML would be
 * refused (styles set from scripts are not affected).
 */
export const contentSecurityPolicy = (html: string) => {
  const hashes = (tag: "script" | "style") =>
    Array.from(html.matchAll(new RegExp(`<${tag}\\b([^>]*)>([\\s\\S]*?)</${tag}\\s*>`, "gi")))
      .filter((m) => !/\bsrc\s*=/i.test(m[1] ?? ""))
      .map((m) => `'sha256-${sha256(m[2] ?? "")}'`)
  return [
    "default-src 'self'",
    ["script-src 'self'", ...hashes("script")].join(" "),
    ["style-src 'self'", ...hashes("style")].join(" "),
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'"
  ].join("; ")
}

const asset = (body: Uint8Array, contentType: string, csp?: string): Asset => ({
  body,
  contentType,
  etag: etagOf(body),
  csp
})

const PackageName = Schema.parseJson(Schema.Struct({ name: Schema.optional(Schema.String) }))

/**
 * The directory holding `package.json`, walking up from `from` (`src/http/` under tsx, `dist/…/http/`
 * compiled): where `ui/` is, and (with `name`) a package's root.
 */
const packageRoot = (from: string, name?: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    let dir = from
    for (;;) {
      const manifest = path.join(dir, "package.json")
      if (yield* fs.exists(manifest)) {
        if (name === undefined) return Option.some(dir)
        const found = yield* fs.readFileString(manifest).pipe(Effect.flatMap(Schema.decodeUnknown(PackageName)), Effect.option)
        if (Option.isSome(found) && found.value.name === name) return Option.some(dir)
      }
      const parent = path.dirname(dir)
      if (parent === dir) return Option.none<string>()
      dir = parent
    }
  })

/** The vendor modules, found through Node's resolution from this module (so from src/ and dist/ alike). */
const vendorAssets = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const require = createRequire(import.meta.url)
  const assets = new Map<string, Asset>()
  for (const [url, pkg, file] of vendorFiles) {
    const loaded = yield* Effect.try(() => require.resolve(pkg)).pipe(
      Effect.flatMap((entry) => packageRoot(path.dirname(entry), pkg)),
      Effect.flatMap((root) => root), // an Option: none fails
      Effect.flatMap((root) => fs.readFile(path.join(root, file))),
      Effect.option
    )
    if (Option.isNone(loaded)) {
      yield* Effect.logWarning(`dashboard: ${pkg}/${file} not found; ${url} will answer 404`)
      continue
    }
    assets.set(url, asset(loaded.value, contentTypes[path.extname(file)] ?? "application/octet-stream"))
  }
  return assets
})

/** Regular files under `root` (symlinks leading out of it and dotfiles left out), by URL. */
const uiAssets = (root: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const assets = new Map<string, Asset>()
    const realRoot = yield* fs.realPath(root)
    const entries = yield* fs.readDirectory(root, { recursive: true })
    for (const entry of entries.sort()) {
      if (assets.size >= MAX_FILES) {
        yield* Effect.logWarning(`dashboard: more than ${MAX_FILES} files in ${root}; the rest are not served`)
        break
      }
      const parts = entry.split(path.sep)
      const contentType = contentTypes[path.extname(entry).toLowerCase()]
      if (contentType === undefined || parts.some((p) => p.startsWith("."))) continue
      const file = path.join(root, entry)
      const real = yield* fs.realPath(file).pipe(Effect.option)
      if (Option.isNone(real) || !real.value.startsWith(realRoot + path.sep)) continue
      const info = yield* fs.stat(real.value).pipe(Effect.option)
      if (Option.isNone(info) || info.value.type !== "File" || Number(info.value.size) > MAX_FILE_BYTES) continue
      const body = yield* fs.readFile(real.value)
      const url = `/ui/${parts.join("/")}`
      const csp = contentType.startsWith("text/html") ? contentSecurityPolicy(new TextDecoder().decode(body)) : undefined
      assets.set(url, asset(body, contentType, csp))
    }
    return assets
  })

/** `UI_DIR`, or `ui/` next to the project's `package.json`. */
const uiRoot = Effect.gen(function* () {
  const path = yield* Path.Path
  const configured = yield* Config.option(Config.string("UI_DIR"))
  if (Option.isSome(configured)) return Option.some(path.resolve(configured.value))
  const project = yield* packageRoot(path.dirname(fileURLToPath(import.meta.url))).pipe(
    Effect.orElseSucceed(() => Option.none<string>())
  )
  return Option.map(project, (dir) => path.join(dir, "ui"))
})

/** Everything the dashboard serves, by URL path; read once. Fails only on an invalid `UI_DIR`. */
export const load = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const root = yield* uiRoot
  const assets = new Map<string, Asset>()
  if (Option.isSome(root)) {
    // An unreadable ui/ costs the page, not the service: the API starts all the same.
    const found = yield* fs.exists(root.value).pipe(
      Effect.flatMap((exists) => (exists ? uiAssets(root.value) : Effect.succeed(new Map<string, Asset>()))),
      Effect.catchAll((error) =>
        Effect.logWarning(`dashboard: could not read ${root.value}`, error.message).pipe(Effect.as(new Map<string, Asset>()))
      )
    )
    for (const [url, a] of found) assets.set(url, a)
  }
  // Vendor files win over anything at ui/vendor/.
  for (const [url, a] of yield* vendorAssets) assets.set(url, a)
  const index = assets.get("/ui/index.html")
  if (index === undefined) {
    yield* Effect.logWarning(`dashboard: no index.html in ${Option.getOrElse(root, () => "ui/")}; / will answer 404`)
  } else {
    assets.set("/", index)
    assets.set("/index.html", index)
  }
  return assets
})

/** Whether `If-None-Match` names `etag` (a list, weak validators and `*` included). */
export const matches = (ifNoneMatch: string | undefined, etag: string) =>
  ifNoneMatch !== undefined &&
  ifNoneMatch.split(",").some((tag) => {
    const t = tag.trim()
    return t === "*" || t === etag || t === `W/${etag}`
  })

/** The URL's path, percent-decoded; `undefined` when it does not decode. */
const decode = Option.liftThrowable(decodeURIComponent)

const pathOf = (url: string) => {
  const end = url.search(/[?#]/)
  return Option.getOrUndefined(decode(end < 0 ? url : url.slice(0, end)))
}

const notFound = (url: string) =>
  HttpServerResponse.unsafeJson({ _tag: "NotFound", message: `no file for ${url}` }, { status: 404 })

export const respond = (assets: ReadonlyMap<string, Asset>) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const path = pathOf(request.url)
    const found = path === undefined ? undefined : assets.get(path)
    if (found === undefined) return notFound(request.url)
    const headers: Record<string, string> = {
      etag: found.etag,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      ...(found.csp === undefined ? {} : { "content-security-policy": found.csp, "referrer-policy": "no-referrer" })
    }
    if (matches(request.headers["if-none-match"], found.etag)) return HttpServerResponse.empty({ status: 304, headers })
    return HttpServerResponse.uint8Array(found.body, { contentType: found.contentType, headers })
  })

/** The routes, on the HttpApi's router (so the API's global middleware covers them too). */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const assets = yield* load
    const handler = respond(assets)
    yield* router.get("/", handler)
    yield* router.get("/index.html", handler)
    yield* router.get("/ui/*", handler)
  })
)
