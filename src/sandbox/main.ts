/**
 * `npm run sandbox`: runs the sandbox upstream on its own for demos and benchmarks until Ctrl-C.
 * Configured by SANDBOX_HOST (default 127.0.0.1), SANDBOX_PORT (default 8090) and SANDBOX_SEED
 * (default 42).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect } from "effect"
import * as Sandbox from "./Sandbox.js"

const routes = [
  "POST /auth/login                         forum login → { token, expiresIn }",
  "GET  /articles/{articleId}/interactions  forum interactions (Bearer token)",
  "POST /chat/completions                   OpenAI-compatible chat (Bearer key)",
  "GET  /screens/{triggerKey}?limit=N       market screen",
  "POST /news                               Serper-style news (X-API-KEY)",
  "GET  /__stats, GET|PUT /__knobs[/{route}], POST /__reset, POST /__revoke-tokens"
]

const program = Effect.gen(function* () {
  const host = yield* Config.string("SANDBOX_HOST").pipe(Config.withDefault("127.0.0.1"))
  // Not Config.port: it rejects 0, and "any free port" is handy for scripted runs.
  const port = yield* Config.integer("SANDBOX_PORT").pipe(
    Config.validate({ message: "Expected a port between 0 and 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8090)
  )
  const seed = yield* Config.integer("SANDBOX_SEED").pipe(Config.withDefault(42))

  return yield* Effect.gen(function* () {
    const sandbox = yield* Sandbox.Sandbox
    yield* Effect.logInfo(`sandbox upstream listening on ${sandbox.url} (seed ${seed})`)
    for (const route of routes) yield* Effect.logInfo(`  ${route}`)
    // Serve until interrupted (Ctrl-C); runMain then closes the layer, which stops the server.
    return yield* Effect.never
  }).pipe(Effect.provide(Sandbox.layer({ host, port, seed })))
})

NodeRuntime.runMain(program)
