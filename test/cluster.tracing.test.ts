/**
 * One trace across instances: a batch posted with a caller's `traceparent` to one of two instances on
 * PostgreSQL runs its parts on both (real service processes, test/support/cluster.ts), and every
 * part's span — on the instance that took the request and on the other — belongs to the caller's
 * trace and leads, parent by parent through the spans both instances exported, back to the request
 * and the caller's span. The cluster carries the sender's trace and span id with each message; this
 * pins that the activity's spans on the other instance join the trace rather than start their own.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Schema, TestServices } from "effect"
import { cluster, env, itemsRun, posts, waitFor } from "./support/cluster.js"
import { attr, type OtlpSpan, receiver, SERVER } from "./support/otlp.js"
import { postgres } from "./support/postgres.js"
import { eventually, json, rawJson } from "./support/requests.js"

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
const CALLER_SPAN = "b7ad6b7169203331"
const ITEMS = 48
const PARTS = 24

const Accepted = Schema.Struct({ id: Schema.String })

it.effect(
  "a batch with a traceparent: its parts' spans on both instances are in the caller's trace, under the request",
  () =>
    Effect.gen(function* () {
      const received = yield* receiver
      const server = yield* postgres
      const { instances } = yield* cluster(server, "cluster_tracing", 2, (i) => ({
        OTEL_EXPORTER_OTLP_ENDPOINT: received.url,
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_RESOURCE_ATTRIBUTES: `service.instance.id=instance-${i}`
      }))
      const [a, b] = instances
      if (a === undefined || b === undefined) return expect.fail("instances")

      const answer = yield* rawJson(
        `${a.url}/api/interactions/fetch-all-interactions`,
        "POST",
        { posts: posts(ITEMS, "traced"), maxConcurrent: 6 },
        { prefer: "respond-async", traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` }
      )
      expect(answer.status).toBe(202)
      const { id } = yield* Schema.decodeUnknown(Accepted)(json(answer))
      const job = yield* waitFor(a.url, id, (j) => j.status === "completed")
      expect(job.succeeded).toBe(ITEMS)
      // Both instances ran items of it (else the test would say nothing about crossing instances).
      expect(yield* itemsRun(a, "interactions")).toBeGreaterThan(0)
      expect(yield* itemsRun(b, "interactions")).toBeGreaterThan(0)

      const instanceOf = (span: OtlpSpan) =>
        received.resourceOf.get(span.spanId)?.find((kv) => kv.key === "service.instance.id")?.value.stringValue
      const partSpans = () => received.spans.filter((s) => s.name === "JobRunner.execute" && attr(s, "job.id") === id)
      // Exported every 100 ms: wait until every part's span is in (24 parts: JOB_PARTITIONS in
      // test/support/cluster.ts, one item per part at least), and from both instances.
      const parts = yield* eventually(
        Effect.suspend(() => {
          const found = partSpans()
          return new Set(found.map((s) => attr(s, "job.part"))).size === PARTS && new Set(found.map(instanceOf)).size === 2
            ? Effect.succeed(found)
            : Effect.fail("not exported yet")
        }),
        "30 seconds"
      )

      const request = received.spans.find((s) => s.kind === SERVER && s.traceId === TRACE_ID)
      expect(request?.parentSpanId).toBe(CALLER_SPAN)
      expect(request === undefined ? undefined : instanceOf(request)).toBe("instance-0")
      expect(parts.every((part) => part.traceId === TRACE_ID)).toBe(true)
      /** The first part whose ancestors do not reach the request, as its chain (names @ instance). */
      const broken = () => {
        const byId = new Map(received.spans.map((s) => [s.spanId, s]))
        for (const part of parts) {
          const chain: Array<string> = []
          let at: OtlpSpan | undefined = part
          while (at !== undefined && at.spanId !== request?.spanId && chain.length < 100) {
            chain.push(`${at.name}@${instanceOf(at)}`)
            at = at.parentSpanId === undefined ? undefined : byId.get(at.parentSpanId)
          }
          if (at === undefined || at.spanId !== request?.spanId) return chain.join(" ← ")
        }
        return undefined
      }
      // A workflow's spans end (and are exported) when its run does, a little after the parts'.
      const chain = yield* eventually(Effect.suspend(() => Effect.succeed(broken())).pipe(Effect.filterOrFail((c) => c === undefined)), "20 seconds").pipe(
        Effect.orElse(() => Effect.succeed(broken()))
      )
      expect(chain, "a part's spans whose ancestors stop short of the request").toBeUndefined()
      const counts = new Map<string, number>()
      for (const name of parts.map((part) => instanceOf(part) ?? "?")) counts.set(name, (counts.get(name) ?? 0) + 1)
      console.log(`part spans by instance: ${JSON.stringify(Object.fromEntries(counts))}`)
    }).pipe(Effect.provide(env), Effect.scoped, TestServices.provideLive),
  180_000
)
