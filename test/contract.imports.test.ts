/**
 * The HTTP contract and the typed client are free of server code: every local module reachable from
 * `src/http/Api.ts` and `src/http/Client.ts` is the contract itself (`Api.ts`, `api/`, `Client.ts`) or
 * the domain (`src/domain/`), and the domain imports nothing but `effect`. Read with the TypeScript
 * compiler's own import scanner, so `export … from` and type-only imports count too. And no module of
 * `src/` imports itself through others, not even for types: a cycle is a seam in the wrong place.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import ts from "typescript"

const root = resolve(import.meta.dirname, "..")

const importsOf = (file: string): ReadonlyArray<string> =>
  ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles.map((f) => f.fileName)

/** `./x.js` → the `.ts` file it names; bare specifiers (packages, `node:`) stay as they are. */
const resolveLocal = (from: string, specifier: string) =>
  specifier.startsWith(".") ? resolve(dirname(from), specifier.replace(/\.js$/, ".ts")) : undefined

/** Every local module reachable from `entries`, with the packages each one imports. */
const reachable = (entries: ReadonlyArray<string>) => {
  const modules = new Map<string, ReadonlyArray<string>>()
  const queue = entries.map((e) => resolve(root, e))
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (modules.has(file)) continue
    const specifiers = importsOf(file)
    modules.set(file, specifiers.filter((s) => !s.startsWith(".")))
    for (const s of specifiers) {
      const local = resolveLocal(file, s)
      if (local !== undefined) queue.push(local)
    }
  }
  return new Map([...modules].map(([file, packages]) => [relative(root, file), packages] as const))
}

const isContract = (path: string) =>
  path.startsWith("src/domain/") || path.startsWith("src/http/api/") || path === "src/http/Api.ts" || path === "src/http/Client.ts"

describe("the contract's import graph", () => {
  const graph = reachable(["src/http/Api.ts", "src/http/Client.ts"])

  it("reaches only the contract and the domain", () => {
    // Not vacuous: the walk did follow the imports into the domain.
    expect([...graph.keys()].filter((p) => p.startsWith("src/domain/")).length).toBeGreaterThanOrEqual(5)
    expect([...graph.keys()].filter((p) => !isContract(p))).toEqual([])
  })

  it("the domain imports only effect", () => {
    const domain = [...graph].filter(([path]) => path.startsWith("src/domain/"))
    expect(domain.flatMap(([path, packages]) => packages.filter((p) => p !== "effect").map((p) => `${path} → ${p}`))).toEqual([])
  })

  it("the contract imports only effect, @effect/platform and the SSE codec", () => {
    const allowed = new Set(["effect", "@effect/platform", "@effect/experimental/Sse"])
    expect([...graph].flatMap(([path, packages]) => packages.filter((p) => !allowed.has(p)).map((p) => `${path} → ${p}`))).toEqual([])
  })

  it("would notice a server import", () => {
    // The scanner sees the kinds of import a server dependency would come in by.
    const text = 'import type { X } from "../jobs/JobRunner.js"\nexport * from "../engine/Budget.js"\nconst m = import("../jobs/Jobs.js")'
    expect(ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName)).toEqual([
      "../jobs/JobRunner.js",
      "../engine/Budget.js",
      "../jobs/Jobs.js"
    ])
  })
})

/** The cycles of a graph (each as the path that closes it), by depth-first search. */
const cyclesOf = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> => {
  const cycles: Array<string> = []
  const state = new Map<string, "open" | "done">()
  const path: Array<string> = []
  const visit = (node: string) => {
    state.set(node, "open")
    path.push(node)
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") cycles.push([...path.slice(path.indexOf(next)), next].join(" → "))
      else if (state.get(next) === undefined) visit(next)
    }
    path.pop()
    state.set(node, "done")
  }
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node)
  return cycles
}

describe("the source's import graph", () => {
  it("has no cycles, type-only imports included", () => {
    const files = readdirSync(resolve(root, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => resolve(root, "src", f))
    const graph = new Map(
      files.map((file) => [
        relative(root, file),
        importsOf(file).flatMap((s) => {
          const local = resolveLocal(file, s)
          return local === undefined ? [] : [relative(root, local)]
        })
      ] as const)
    )
    // Not vacuous: every module of src/ was read, and the imports between them were followed.
    expect(graph.size).toBeGreaterThan(100)
    expect([...graph.values()].flat().length).toBeGreaterThan(300)
    expect(cyclesOf(graph)).toEqual([])
  })

  it("would notice a cycle", () => {
    expect(cyclesOf(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]))).toEqual(["a → b → c → a"])
  })
})
