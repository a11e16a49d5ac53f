/**
 * Spans for upstream calls only when something records them. With Effect's built-in tracer (the
 * default: it exports nothing) a per-call span is pure cost: the platform's HTTP client span sets an
 * attribute per request and response header, redacts them and adds trace headers to every request,
 * and each client's own span is one more per call (`npm run bench:ledger`, steps c1–c3). A program
 * that installs a tracer (e.g. `@effect/opentelemetry`'s) before the clients are built gets them all.
 */
import { HttpClient } from "@effect/platform"
import { Context, DefaultServices, Effect, Predicate, Tracer } from "effect"

const builtInTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/** Whether a tracer other than Effect's built-in one is installed (decided when a client is built). */
export const tracingOn: Effect.Effect<boolean> = Effect.map(Effect.tracer, (tracer) => tracer !== builtInTracer)

/** The client an upstream calls through: without the per-request span and trace headers unless tracing is on. */
export const clientForCalls = (client: HttpClient.HttpClient): Effect.Effect<HttpClient.HttpClient> =>
  Effect.map(tracingOn, (on) => (on ? client : HttpClient.withTracerDisabledWhen(client, () => true)))

/** The upstream a client's span is for, from its name ("ForumClient.interactions" → "forum"). */
const upstreamOf = (name: string): string => {
  const at = name.indexOf("Client.")
  return (at > 0 ? name.slice(0, at) : name).toLowerCase()
}

/** The failed call's error type (`_tag`) and, when it got an answer, the upstream's HTTP status. */
const annotateError = (error: unknown): Effect.Effect<void> => {
  if (!Predicate.hasProperty(error, "_tag") || typeof error._tag !== "string") return Effect.void
  const status = Predicate.hasProperty(error, "status") && typeof error.status === "number" ? { "http.response.status_code": error.status } : {}
  return Effect.annotateCurrentSpan({ "error.type": error._tag, ...status })
}

/**
 * `Effect.withSpan` when tracing is on, else the call as it is. The span says which upstream it
 * calls (`upstream`) and, when the call fails, the error's type and the upstream's status; the HTTP
 * client's own span under it has the status of every answer.
 */
export const spanWhen = (on: boolean, name: string) => {
  const options = { captureStackTrace: false, attributes: { upstream: upstreamOf(name) } }
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    on ? Effect.withSpan(Effect.tapError(self, annotateError), name, options) : self
}
