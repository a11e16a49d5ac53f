/**
 * Memory after a burst, through the real process (`src/main.ts`) against a sandbox in this process:
 * once the jobs are done and the service has been idle, its RSS is back within 20 % of its level
 * before the burst. RSS is the service's own, so this runs beside other files (the latency-bound
 * burst is `overload.test.ts`, alone).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as fs from "node:fs"
import * as Sandbox from "../src/sandbox/Sandbox.js"
import * as Service from "./support/service.js"
import { idOf, jobDone, startService, submit, until } from "./support/overload.js"
import { metric } from "./support/requests.js"

const rssMb = (pid: number) =>
  Effect.sync(() => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024)

it.live(
  "memory returns near its level before a burst once the jobs are done (RSS within 20 %)",
  () =>
    Effect.gen(function* () {
      // The upstream in the test process: the service's RSS is then the service's alone.
      const sandbox = yield* Sandbox.Sandbox
      const service = yield* startService({
        ...Service.sandboxEnv(sandbox.url),
        LLM_API_KEY: "test",
        NEWS_API_KEY: "test",
        ...Object.fromEntries([101, 102, 103].flatMap((k) => [[`KOL_${k}_EMAIL`, `kol${k}@example.com`], [`KOL_${k}_PASSWORD`, `pw-${k}`]]))
      })
      const round = (name: string, jobs: number) =>
        Effect.forEach(
          Array.from({ length: jobs }, (_, j) => j),
          (j) => submit(service.url, `${name}-${j}`, 10),
          { concurrency: 50 }
        ).pipe(
          // Generous: the subject is memory, and beside other files on a loaded machine (load ~15) a
          // round's last job once took over a minute.
          Effect.flatMap((answers) => Effect.forEach(answers, (a) => Effect.flatMap(idOf(a), (id) => jobDone(service.url, id, "4 minutes")), { concurrency: 20 }))
        )
      const settled = Effect.sleep(Duration.seconds(5))
      // The baseline after a first round: code paths compiled, pools and caches at their working size.
      yield* round("warm", 60)
      yield* settled
      const before = yield* rssMb(service.pid)
      for (let r = 0; r < 3; r++) yield* round(`r${r}`, 120)
      const peak = yield* rssMb(service.pid)
      // Idle: the service collects once its loop has been quiet for 5 s after a burst's garbage, or
      // for 20 s after any work (EventLoop.ts); generous beyond that for a loaded machine.
      const after = yield* until(rssMb(service.pid), (mb) => mb <= before * 1.2, "60 seconds").pipe(
        Effect.catchAll(() => rssMb(service.pid))
      )
      // Which collections ran, for whoever reads a failure.
      const collections = yield* Effect.forEach(["burst", "idle"], (reason) =>
        Effect.map(metric(service.url, "pp_idle_collections_total", { reason }), (n) => `${reason} ${n}`)
      ).pipe(Effect.map((counts) => counts.join(", ")), Effect.orElseSucceed(() => "unknown"))
      console.log(`RSS MB before ${before.toFixed(0)}, after 360 jobs ${peak.toFixed(0)}, idle ${after.toFixed(0)}; idle collections: ${collections}`)
      expect(after).toBeLessThanOrEqual(before * 1.2)
    }).pipe(Effect.provide(Sandbox.layer({ seed: 11 })), Effect.scoped),
  600_000
)
