/**
 * Admission control through the real process (`src/main.ts`, embedded sandbox on its worker thread):
 * past MAX_PENDING_ITEMS a batch gets 503 + Retry-After, there is room again once work finishes, and
 * a batch larger than the bound is taken when idle. It counts items, not time, so it runs beside
 * other files (the latency-bound burst is `overload.test.ts`, alone).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { idOf, jobDone, request, startService, submit, until } from "./support/overload.js"

/** The pending-items gauge from /metrics. */
const pendingItems = (url: string) =>
  request(`${url}/metrics`).pipe(
    Effect.map((a) => Number(/^pp_pending_items\{[^}]*\} (\S+)$/m.exec(a.body)?.[1] ?? Number.NaN))
  )

const Refusal = Schema.parseJson(Schema.Struct({ _tag: Schema.String, message: Schema.String, retryAfterSeconds: Schema.Number }))

it.live(
  "past MAX_PENDING_ITEMS a batch gets 503 Overloaded + Retry-After; room again once work finishes; a batch larger than the bound is taken when idle",
  () =>
    Effect.gen(function* () {
      // Realistic sandbox latencies (~300 ms a call): 20 items take a couple of seconds.
      const service = yield* startService({ MAX_PENDING_ITEMS: "30" })
      const first = yield* submit(service.url, "a", 20)
      expect(first.status).toBe(202)
      expect(yield* pendingItems(service.url)).toBe(20)

      const refused = yield* submit(service.url, "b", 20)
      expect(refused.status).toBe(503)
      const retryAfter = Number(refused.headers.get("retry-after"))
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true)
      const body = yield* Schema.decodeUnknown(Refusal)(refused.body)
      expect(body._tag).toBe("Overloaded")
      expect(body.message).toContain("MAX_PENDING_ITEMS (30)")
      expect(body.retryAfterSeconds).toBe(retryAfter)
      // A sync request is refused the same way, before it waits for anything.
      expect((yield* submit(service.url, "c", 20, false)).status).toBe(503)

      yield* jobDone(service.url, yield* idOf(first))
      yield* until(pendingItems(service.url), (n) => n === 0, "10 seconds")
      const later = yield* submit(service.url, "d", 20)
      expect(later.status).toBe(202)
      yield* jobDone(service.url, yield* idOf(later))
      yield* until(pendingItems(service.url), (n) => n === 0, "10 seconds")

      // Nothing pending: one batch above the bound is still taken (a bound below the batch cap must not lock it out).
      const big = yield* submit(service.url, "e", 40)
      expect(big.status).toBe(202)
      const metrics = yield* request(`${service.url}/metrics`)
      expect(metrics.body).toMatch(/^pp_admission_refused_total\{[^}]*\} 2$/m)
    }).pipe(Effect.scoped),
  90_000
)
