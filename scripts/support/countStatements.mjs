// Preload for `scripts/idle-cost.ts` (`node --import <this> dist/src/main.js`): counts, inside a
// service process, every SQL statement it sends (pg `Client.query`, better-sqlite3 statement runs and
// `prepare` calls, by text) and every timer it arms (`setTimeout`/`setInterval`, by delay: each
// Effect.sleep and Schedule.spaced step is one). Nothing is written until the process gets SIGUSR2;
// then the counts so far go to $COUNT_STATEMENTS_FILE as JSON, so a harness can diff two snapshots
// taken a known time apart. Plain JavaScript on purpose: it patches the drivers before the service
// loads them and must not itself show up in what it measures.
import { createRequire } from "node:module"
import { renameSync, writeFileSync } from "node:fs"
import path from "node:path"

const require = createRequire(path.join(process.cwd(), "package.json"))
const out = process.env.COUNT_STATEMENTS_FILE
const counts = { pg: new Map(), sqlite: new Map(), sqlitePrepare: new Map(), timers: new Map() }
const bump = (map, key) => map.set(key, (map.get(key) ?? 0) + 1)
const squash = (text) => String(text).replace(/\s+/g, " ").trim().slice(0, 200)

try {
  const pg = require("pg")
  const query = pg.Client.prototype.query
  pg.Client.prototype.query = function (config, ...rest) {
    const text = typeof config === "string" ? config : config?.text
    if (text !== undefined) bump(counts.pg, squash(text))
    return query.call(this, config, ...rest)
  }
} catch {}

try {
  const Database = require("better-sqlite3")
  const prepare = Database.prototype.prepare
  Database.prototype.prepare = function (source, ...rest) {
    bump(counts.sqlitePrepare, squash(source))
    return prepare.call(this, source, ...rest)
  }
  const probe = new Database(":memory:")
  const Statement = Object.getPrototypeOf(prepare.call(probe, "SELECT 1"))
  for (const method of ["run", "all", "get", "iterate"]) {
    const original = Statement[method]
    Statement[method] = function (...args) {
      bump(counts.sqlite, squash(this.source))
      return original.apply(this, args)
    }
  }
  probe.close()
} catch {}

const setTimeoutOriginal = globalThis.setTimeout
globalThis.setTimeout = function (fn, ms, ...rest) {
  bump(counts.timers, `setTimeout ${Math.round(Number(ms ?? 0))} ms`)
  return setTimeoutOriginal(fn, ms, ...rest)
}
const setIntervalOriginal = globalThis.setInterval
globalThis.setInterval = function (fn, ms, ...rest) {
  bump(counts.timers, `setInterval ${Math.round(Number(ms ?? 0))} ms`)
  return setIntervalOriginal(fn, ms, ...rest)
}

process.on("SIGUSR2", () => {
  if (out === undefined) return
  const plain = Object.fromEntries(Object.entries(counts).map(([k, m]) => [k, Object.fromEntries(m)]))
  // Written aside and renamed: the harness waits for the file to appear and must not read half of it.
  writeFileSync(`${out}.tmp`, JSON.stringify({ at: performance.now(), ...plain }))
  renameSync(`${out}.tmp`, out)
})
