/**
 * What the overload tests share (`overload.test.ts` — the burst, run alone — and
 * `overload.admission.test.ts`, `overload.memory.test.ts`, which run beside other files): requests
 * through a wide undici pool, batch submission, polling until a condition holds, and a spawned
 * service on a throw-away data directory.
 */
import { Duration, Effect, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Agent, fetch, type Headers, type RequestInit } from "undici"
import * as Service from "./service.js"

// A burst opens 150 connections at once; the default pool would queue them in the client.
const dispatcher = new Agent({ connections: 512, headersTimeout: 0, bodyTimeout: 0 })

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

export const request = (url: string, init: RequestInit = {}) =>
  Effect.tryPromise(async (): Promise<Answer> => {
    const response = await fetch(url, { ...init, dispatcher })
    return { status: response.status, headers: response.headers, body: await response.text() }
  })

const posts = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ postId: `${prefix}-p${i}`, articleId: `${prefix}-a${i}`, kolSerial: String(101 + (i % 3)) }))

export const submit = (url: string, prefix: string, items: number, async = true) =>
  request(`${url}/api/interactions/fetch-all-interactions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(async ? { prefer: "respond-async" } : {}) },
    body: JSON.stringify({ posts: posts(prefix, items), maxConcurrent: 5 })
  })

const Accepted = Schema.parseJson(Schema.Struct({ id: Schema.String }))
const JobStatus = Schema.parseJson(Schema.Struct({ status: Schema.String }))

/** The job id of a 202 answer. */
export const idOf = (answer: Answer) => Effect.map(Schema.decodeUnknown(Accepted)(answer.body), (a) => a.id)

export const until = <A, E>(probe: Effect.Effect<A, E>, done: (a: A) => boolean, within: Duration.DurationInput) =>
  probe.pipe(
    Effect.filterOrFail(done, () => new Error("not yet")),
    Effect.retry(Schedule.spaced(Duration.millis(200))),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`condition not met within ${Duration.format(Duration.decode(within))}`) })
  )

/** Until job `id` has completed, at most `within` (60 s by default). */
export const jobDone = (url: string, id: string, within: Duration.DurationInput = "60 seconds") =>
  until(
    request(`${url}/api/jobs/${id}?results=0`).pipe(Effect.flatMap((a) => Schema.decodeUnknown(JobStatus)(a.body))),
    (job) => job.status === "completed",
    within
  )

const dataDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-overload-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

export const startService = (env: Record<string, string>) =>
  Effect.flatMap(dataDir, (dir) => Service.start({ DATA_DIR: dir, SHUTDOWN_GRACE_PERIOD: "1 second", ...env }))
