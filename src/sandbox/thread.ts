/**
 * The sandbox upstream on a worker thread of its own, for `npm start` without upstream URLs.
 *
 * In the service's own event loop the sandbox competed with the service for the same thread: under
 * a burst of batches its answers came late, attempts timed out and breakers opened against a
 * "healthy" upstream — a demo failing its own items. On a thread it has its own loop (and a core,
 * where one is free), and the service talks to it over real HTTP as to any upstream.
 */
import { Data, Deferred, Effect, type Scope } from "effect"
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import * as Sandbox from "./Sandbox.js"

export class SandboxStartError extends Data.TaggedError("SandboxStartError")<{ readonly message: string }> {}

/** This file runs as the worker too: compiled JavaScript, or TypeScript through tsx (`npm start`, tests). */
const compiled = import.meta.url.endsWith(".js")

type Reply = { readonly url: string } | { readonly error: string }

/** Starts the sandbox on a worker thread; the thread ends when the scope closes. */
export const start = (options: Sandbox.SandboxOptions): Effect.Effect<{ readonly url: string }, SandboxStartError, Scope.Scope> =>
  Effect.gen(function* () {
    const ready = yield* Deferred.make<string, SandboxStartError>()
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const worker = compiled
          ? new Worker(new URL(import.meta.url), { workerData: options })
          : // Under tsx a worker does not get its loader from `--import tsx` (Node 20); register it first.
            new Worker(
              `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}) })`,
              { eval: true, workerData: options }
            )
        worker.on("message", (reply: Reply) =>
          Deferred.unsafeDone(
            ready,
            "url" in reply ? Effect.succeed(reply.url) : Effect.fail(new SandboxStartError({ message: reply.error }))
          )
        )
        worker.on("error", (error) => Deferred.unsafeDone(ready, Effect.fail(new SandboxStartError({ message: error.message }))))
        worker.on("exit", (code) =>
          Deferred.unsafeDone(ready, Effect.fail(new SandboxStartError({ message: `sandbox thread exited (${code})` })))
        )
        // The sandbox must not keep the process alive once the service is done.
        worker.unref()
        return worker
      }),
      (worker) => Effect.promise(() => worker.terminate())
    )
    return { url: yield* Deferred.await(ready) }
  })

if (!isMainThread && parentPort !== null) {
  const port = parentPort
  Effect.runFork(
    Effect.gen(function* () {
      const sandbox = yield* Sandbox.Sandbox
      port.postMessage({ url: sandbox.url } satisfies Reply)
      return yield* Effect.never
    }).pipe(
      Effect.provide(Sandbox.layer(workerData as Sandbox.SandboxOptions)),
      Effect.catchAllCause((cause) => Effect.sync(() => port.postMessage({ error: String(cause) } satisfies Reply)))
    )
  )
}
