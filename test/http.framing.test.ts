/**
 * The event-stream framing end to end without a socket: the server's `eventResponse` (NDJSON lines,
 * SSE frames) read back by `Client.events` from a body cut into 7-byte chunks — so chunk boundaries
 * fall inside lines, inside frames and inside multi-byte characters (generated posts are Chinese).
 */
import { HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Layer, Stream } from "effect"
import type { JobEvent } from "../src/domain/JobEvent.js"
import * as Client from "../src/http/Client.js"
import { eventResponse } from "../src/http/Handlers.js"

const jobId = "0b6f3c1e-5a7d-4c2b-9e1f-3d2a1b0c9e8f"
const events: ReadonlyArray<JobEvent> = [
  { type: "started", jobId, kind: "post-generation", total: 2, at: "2026-12-01T20:00:00.000Z" },
  ...[0, 1].flatMap((seq): ReadonlyArray<JobEvent> => [
    {
      type: "item",
      jobId,
      seq,
      result: {
        index: 1 - seq,
        status: "succeeded",
        attempts: 1,
        durationMs: 812,
        value: { content: `台積電今日漲停 ${seq}\n第二行`, model: "gpt-4o-mini", usage: null }
      }
    },
    { type: "progress", jobId, total: 2, completed: seq + 1, succeeded: seq + 1, failed: 0, cancelled: 0, skipped: 0, inFlight: 1 - seq }
  ]),
  {
    type: "completed",
    jobId,
    job: {
      id: jobId,
      kind: "post-generation",
      status: "completed",
      success: true,
      total: 2,
      completed: 2,
      succeeded: 2,
      failed: 0,
      cancelled: 0,
      skipped: 0,
      options: {},
      createdAt: "2026-12-01T20:00:00.000Z"
    }
  }
]

/** The body `eventResponse` writes for `events`, as one byte array. */
const serverBody = (sse: boolean) =>
  Effect.gen(function* () {
    const stop = yield* Deferred.make<void>()
    const response = eventResponse(Stream.fromIterable(events), sse, stop)
    if (response.body._tag !== "Stream") return yield* Effect.dieMessage("expected a streamed body")
    const chunks = yield* Stream.runCollect(response.body.stream)
    return { contentType: response.body.contentType, bytes: Buffer.concat(Chunk.toReadonlyArray(chunks)) }
  })

/** An HttpClient whose every response is `bytes` in 7-byte chunks with `contentType`. */
const replaying = (bytes: Uint8Array, contentType: string) =>
  Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request) =>
      Effect.sync(() => {
        let offset = 0
        const body = new ReadableStream<Uint8Array>({
          pull: (controller) => {
            if (offset >= bytes.length) return controller.close()
            controller.enqueue(bytes.slice(offset, offset + 7))
            offset += 7
          }
        })
        return HttpClientResponse.fromWeb(request, new Response(body, { headers: { "content-type": contentType } }))
      })
    )
  )

const readBack = (bytes: Uint8Array, contentType: string) =>
  Stream.runCollect(Client.events(HttpClientRequest.get("http://test/api/jobs/x/events"))).pipe(
    Effect.map(Chunk.toReadonlyArray),
    Effect.provide(replaying(bytes, contentType))
  )

describe("event-stream framing", () => {
  it.effect("NDJSON: one JSON line per event, read back event for event across split characters", () =>
    Effect.gen(function* () {
      const { contentType, bytes } = yield* serverBody(false)
      expect(contentType).toBe("application/x-ndjson")
      expect(bytes.toString("utf8")).toBe(events.map((e) => `${JSON.stringify(e)}\n`).join(""))
      expect(yield* readBack(bytes, contentType)).toEqual(events)
    })
  )

  it.effect("SSE: frames named by type, item seq as id, no retry field; read back event for event", () =>
    Effect.gen(function* () {
      const { contentType, bytes } = yield* serverBody(true)
      expect(contentType).toBe("text/event-stream")
      const frames = bytes.toString("utf8").split("\n\n").filter((f) => f !== "")
      expect(frames).toEqual(
        events.map((e) => `${e.type === "item" ? `id: ${e.seq}\n` : ""}event: ${e.type}\ndata: ${JSON.stringify(e)}`)
      )
      expect(yield* readBack(bytes, contentType)).toEqual(events)
    })
  )

  it.effect("a line that is not an event fails the stream with StreamError", () =>
    Effect.gen(function* () {
      const bytes = Buffer.from(`${JSON.stringify(events[0])}\n{"type":"nope"}\n`)
      const error = yield* Effect.flip(readBack(bytes, "application/x-ndjson"))
      expect(error._tag).toBe("StreamError")
      expect(error.message).toMatch(/^bad event: /)
      const frame = Buffer.from(`event: started\ndata: not json\n\n`)
      const sseError = yield* Effect.flip(readBack(frame, "text/event-stream"))
      expect(sseError.message).toMatch(/^bad event: /)
    })
  )
})
