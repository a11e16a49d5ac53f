/**
 * Which spans the service's tracer exports: parent-based, plus one rule of its own. A span whose
 * parent is not sampled (a caller's `traceparent` with flags `00`, or a span dropped here) is not
 * exported either, as OTel's default sampler does. A database statement with no parent is dropped:
 * @effect/sql makes a span per statement, and the background loops (the storage probe every 2 s,
 * the cluster's polling, retention) would each start a new one-span trace every few seconds,
 * forever. Statements made for a request or a job are their children and kept.
 *
 * A dropped span is still a span to Effect (its children must see a parent that is not sampled),
 * with its own ids; it records nothing and is never handed to the exporter.
 */
import { Exit, Option, Tracer } from "effect"
import { randomBytes } from "node:crypto"

class Unsampled implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = false
  readonly spanId = randomBytes(8).toString("hex")
  readonly traceId: string
  readonly attributes: ReadonlyMap<string, unknown> = new Map()
  readonly links: ReadonlyArray<Tracer.SpanLink> = []
  status: Tracer.SpanStatus
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Tracer.Span["context"],
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.traceId = Option.match(parent, { onNone: () => randomBytes(16).toString("hex"), onSome: (p) => p.traceId })
    this.status = { _tag: "Started", startTime }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    if (this.status._tag === "Started") this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(): void {}
  event(): void {}
  addLinks(): void {}
}

const dropped = (name: string, parent: Option.Option<Tracer.AnySpan>): boolean =>
  Option.match(parent, { onNone: () => name.startsWith("sql."), onSome: (p) => !p.sampled })

/** `tracer` with the sampling rules above. */
export const sampled = (tracer: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) =>
      dropped(name, parent)
        ? new Unsampled(name, parent, context, startTime, kind)
        : tracer.span(name, parent, context, links, startTime, kind, options),
    context: (f, fiber) => tracer.context(f, fiber)
  })
