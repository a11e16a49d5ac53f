/**
 * A small OTLP/HTTP JSON receiver for tests: a node:http server on 127.0.0.1 keeping every POST to
 * /v1/traces, decoded, with the resource each span came in under (so spans from several service
 * processes can be told apart), plus helpers to read spans' attributes and children.
 */
import { Effect, Schema } from "effect"
import * as http from "node:http"

const AnyValue = Schema.Struct({
  stringValue: Schema.optional(Schema.String),
  intValue: Schema.optional(Schema.Union(Schema.Number, Schema.NumberFromString)),
  doubleValue: Schema.optional(Schema.Number),
  boolValue: Schema.optional(Schema.Boolean)
})
const KeyValue = Schema.Struct({ key: Schema.String, value: AnyValue })
export const OtlpSpan = Schema.Struct({
  traceId: Schema.String,
  spanId: Schema.String,
  parentSpanId: Schema.optional(Schema.String),
  name: Schema.String,
  kind: Schema.Number,
  attributes: Schema.Array(KeyValue),
  status: Schema.Struct({ code: Schema.Number, message: Schema.optional(Schema.String) })
})
export type OtlpSpan = typeof OtlpSpan.Type
const TracesData = Schema.Struct({
  resourceSpans: Schema.Array(
    Schema.Struct({
      resource: Schema.Struct({ attributes: Schema.Array(KeyValue) }),
      scopeSpans: Schema.Array(Schema.Struct({ spans: Schema.Array(OtlpSpan) }))
    })
  )
})
const decodeTraces = Schema.decodeUnknownSync(Schema.parseJson(TracesData))

/** OTLP's SpanKind numbers. */
export const SERVER = 2
export const STATUS_ERROR = 2

export interface Received {
  readonly url: string
  readonly spans: Array<OtlpSpan>
  readonly resources: Array<ReadonlyArray<typeof KeyValue.Type>>
  /** Each span's resource, by span id. */
  readonly resourceOf: Map<string, ReadonlyArray<typeof KeyValue.Type>>
  readonly requests: Array<{ readonly path: string; readonly headers: http.IncomingHttpHeaders }>
}

/** The receiver, listening until the test's scope closes; it answers every POST with `status`. */
export const receiverAnswering = (status: number) => Effect.acquireRelease(
  Effect.async<{ readonly server: http.Server; readonly received: Received }>((resume) => {
    const received: Received = { url: "", spans: [], resources: [], resourceOf: new Map(), requests: [] }
    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        received.requests.push({ path: req.url ?? "", headers: req.headers })
        if (req.method === "POST" && req.url === "/v1/traces") {
          const data = decodeTraces(Buffer.concat(chunks).toString("utf8"))
          for (const rs of data.resourceSpans) {
            received.resources.push(rs.resource.attributes)
            for (const ss of rs.scopeSpans) {
              received.spans.push(...ss.spans)
              for (const span of ss.spans) received.resourceOf.set(span.spanId, rs.resource.attributes)
            }
          }
        }
        res.writeHead(status, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = address !== null && typeof address === "object" ? address.port : 0
      resume(Effect.succeed({ server, received: { ...received, url: `http://127.0.0.1:${port}` } }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ received }) => received))

export const receiver = receiverAnswering(200)

export const attr = (span: OtlpSpan | undefined, key: string): string | number | boolean | undefined => {
  const value = span?.attributes.find((a) => a.key === key)?.value
  return value?.stringValue ?? value?.intValue ?? value?.doubleValue ?? value?.boolValue
}

export const childrenOf = (spans: ReadonlyArray<OtlpSpan>, parent: OtlpSpan | undefined, name?: string) =>
  spans.filter((s) => parent !== undefined && s.parentSpanId === parent.spanId && (name === undefined || s.name === name))

