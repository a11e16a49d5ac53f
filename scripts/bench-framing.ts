/**
 * What the event-stream framing costs per event: the hand-written NDJSON/SSE framing against
 * `@effect/platform`'s `Ndjson` and `@effect/experimental`'s `Sse`, on 10,000 job events (item,
 * progress pairs with a generated post each), server side (events → bytes) and client side (bytes in
 * 16 KiB chunks → decoded events). CPU time per event (process.cpuUsage), median of 7 runs after a warm-up.
 *
 *   npx tsx scripts/bench-framing.ts
 */
import * as Sse from "@effect/experimental/Sse"
import { Ndjson } from "@effect/platform"
import { Chunk, Effect, Schema, Stream } from "effect"
import { JobEvent } from "../src/domain/JobEvent.js"

const N = 10_000
const RUNS = 7

const events: ReadonlyArray<JobEvent> = Array.from({ length: N }, (_, i): JobEvent =>
  i % 2 === 0
    ? {
        type: "item",
        jobId: "0b6f3c1e-5a7d-4c2b-9e1f-3d2a1b0c9e8f",
        seq: i / 2,
        result: {
          index: i / 2,
          id: `req-${i / 2}`,
          status: "succeeded",
          attempts: 1,
          durationMs: 812,
          value: { content: "台積電今日漲停，成交量放大，投資人請注意風險。".repeat(4), model: "gpt-4o-mini", usage: null }
        }
      }
    : { type: "progress", jobId: "0b6f3c1e-5a7d-4c2b-9e1f-3d2a1b0c9e8f", total: N / 2, completed: (i + 1) / 2, succeeded: (i + 1) / 2, failed: 0, cancelled: 0, skipped: 0, inFlight: 2 }
)

const ownNdjson = (e: JobEvent) => `${JSON.stringify(e)}\n`
const ownSse = (e: JobEvent) => `event: ${e.type}\n${e.type === "item" ? `id: ${e.seq}\n` : ""}data: ${JSON.stringify(e)}\n\n`
const libSse = (e: JobEvent) =>
  Sse.encoder.write({ _tag: "Event", event: e.type, id: e.type === "item" ? String(e.seq) : undefined, data: JSON.stringify(e) })

// Server: one event per chunk, as a live job's events arrive.
const source = Stream.fromIterable(events).pipe(Stream.rechunk(1))
const server = {
  "ndjson, ours": source.pipe(Stream.map(ownNdjson), Stream.encodeText),
  "ndjson, Ndjson.packString": source.pipe(Stream.pipeThroughChannel(Ndjson.packString()), Stream.encodeText),
  "sse, ours": source.pipe(Stream.map(ownSse), Stream.encodeText),
  "sse, Sse.encoder": source.pipe(Stream.map(libSse), Stream.encodeText)
}

const bytesOf = (text: string) => {
  const all = new TextEncoder().encode(text)
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < all.length; i += 16_384) chunks.push(all.subarray(i, i + 16_384))
  return Stream.fromIterable(chunks).pipe(Stream.rechunk(1))
}
const ndjsonBytes = bytesOf(events.map(ownNdjson).join(""))
const sseBytes = bytesOf(events.map(ownSse).join(""))
const decode = Schema.decodeUnknown(Schema.parseJson(JobEvent))
const decodeObject = Schema.decodeUnknown(JobEvent)

const ownSseData = (lines: Stream.Stream<string>) =>
  lines.pipe(
    Stream.mapAccum([] as Array<string>, (data, line) => {
      if (line === "") return [[], data.length === 0 ? [] : [data.join("\n")]]
      if (line.startsWith("data:")) return [[...data, line.slice(line.startsWith("data: ") ? 6 : 5)], []]
      return [data, []]
    }),
    Stream.flattenIterables
  )

const client = {
  "ndjson, ours": ndjsonBytes.pipe(Stream.decodeText(), Stream.splitLines, Stream.filter((l) => l.trim() !== ""), Stream.mapEffect(decode)),
  "ndjson, Ndjson.unpackSchemaString": ndjsonBytes.pipe(
    Stream.decodeText(),
    Stream.pipeThroughChannel(Ndjson.unpackSchemaString(JobEvent)({ ignoreEmptyLines: true }))
  ),
  "sse, ours": ownSseData(sseBytes.pipe(Stream.decodeText(), Stream.splitLines)).pipe(Stream.mapEffect(decode)),
  "sse, Sse.makeChannel": sseBytes.pipe(
    Stream.decodeText(),
    Stream.pipeThroughChannel(Sse.makeChannel()),
    Stream.mapEffect((event) => decode(event.data))
  ),
  "sse, Sse.makeChannel fed by lines": sseBytes.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.map((line) => `${line}\n`),
    Stream.pipeThroughChannel(Sse.makeChannel()),
    Stream.mapEffect((event) => decode(event.data))
  ),
  "(JSON.parse + schema alone)": Stream.fromIterable(events.map((e) => JSON.stringify(e))).pipe(
    Stream.mapEffect((line) => decodeObject(JSON.parse(line)))
  )
}

const cpuPerEvent = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function* () {
    yield* Stream.runDrain(stream)
    const samples: Array<number> = []
    for (let i = 0; i < RUNS; i++) {
      const before = process.cpuUsage()
      const count = yield* Stream.runCount(stream)
      const used = process.cpuUsage(before)
      if (count !== N) return yield* Effect.dieMessage(`expected ${N} events, got ${count}`)
      samples.push((used.user + used.system) / N)
    }
    samples.sort((a, b) => a - b)
    return samples[Math.floor(RUNS / 2)] ?? Number.NaN
  })

const program = Effect.gen(function* () {
  for (const [side, table] of [["server (events → bytes)", server], ["client (bytes → events)", client]] as const) {
    console.log(side)
    for (const [name, stream] of Object.entries(table)) {
      const us = yield* cpuPerEvent<unknown, unknown>(stream)
      console.log(`  ${name.padEnd(36)} ${us.toFixed(2)} µs CPU / event`)
    }
  }
  // Same output, byte for byte (server) and event for event (client)?
  const text = <E>(s: Stream.Stream<Uint8Array, E>) => Effect.map(Stream.runCollect(Stream.decodeText(s)), (c) => Chunk.join(c, ""))
  console.log("ndjson bytes equal:", (yield* text(server["ndjson, ours"])) === (yield* text(server["ndjson, Ndjson.packString"])))
})

Effect.runPromise(program)
