/**
 * The four upstream clients as the service runs them: at the URLs the environment names, or — when
 * no upstream URL is set at all — against the sandbox started on a worker thread, so `npm start`
 * works on a fresh machine. Setting any URL turns the sandbox off (and then every URL is required).
 */
import { Config, Context, Effect, Layer, Option, Redacted } from "effect"
import type * as Sandbox from "../sandbox/Sandbox.js"
import * as SandboxThread from "../sandbox/thread.js"
import { UpstreamBudgets } from "./Budgets.js"
import { ForumClient } from "./Forum.js"
import { KolCredentials } from "./KolCredentials.js"
import { LlmClient } from "./Llm.js"
import { MarketClient } from "./Market.js"
import { NewsClient } from "./News.js"
import { UpstreamConfig } from "./UpstreamConfig.js"
import * as UndiciHttpClient from "./UndiciHttpClient.js"

/** Where the upstreams are, for the start-up log and `/ready`. */
export class UpstreamMode extends Context.Tag("parallel-processor/UpstreamMode")<
  UpstreamMode,
  { readonly embeddedSandbox: Option.Option<string> }
>() {}

const urlVariables = ["FORUM_API_URL", "LLM_BASE_URL", "MARKET_API_URL", "NEWS_API_URL"] as const

const anyUrlSet = Effect.map(
  Effect.forEach(urlVariables, (name) => Effect.orElseSucceed(Config.option(Config.string(name)), () => Option.none())),
  (values) => values.some(Option.isSome)
)

/** Sandbox accounts: any serial logs in with a made-up address; real accounts still come from the env. */
const sandboxCredentials = Layer.effect(
  KolCredentials,
  Effect.map(KolCredentials, (fromEnv) => ({
    get: (kolSerial: string) =>
      fromEnv.get(kolSerial).pipe(
        Effect.orElse(() =>
          /^[A-Za-z0-9_]+$/.test(kolSerial)
            ? Effect.succeed({ email: `kol${kolSerial}@sandbox.local`, password: Redacted.make("sandbox") })
            : fromEnv.get(kolSerial)
        )
      )
  }))
).pipe(Layer.provide(KolCredentials.fromConfig))

/** Latencies like the real upstreams', so a demo shows what parallelism buys (SANDBOX_PROFILE=instant for none). */
const realisticKnobs = {
  login: { latency: { kind: "fixed", ms: 150 } },
  interactions: { latency: { kind: "lognormal", medianMs: 300, sigma: 0.4 } },
  chat: { latency: { kind: "lognormal", medianMs: 1500, sigma: 0.3 } },
  screen: { latency: { kind: "lognormal", medianMs: 250, sigma: 0.3 } },
  news: { latency: { kind: "lognormal", medianMs: 400, sigma: 0.3 } }
} as const satisfies Sandbox.SandboxOptions["knobs"]

// undici's own request API: a fraction of the CPU of `fetch` per call (measured in bench:http), same
// AbortSignal support; through the platform's HttpClient.make with a lighter response (UndiciHttpClient.ts).
const httpClient = UndiciHttpClient.layer

const clients = Layer.mergeAll(ForumClient.layer, LlmClient.layer, MarketClient.layer, NewsClient.layer)

const external = clients.pipe(
  Layer.provide(Layer.mergeAll(httpClient, UpstreamConfig.fromEnv, KolCredentials.fromConfig)),
  Layer.merge(Layer.succeed(UpstreamMode, { embeddedSandbox: Option.none() }))
)

const embedded = Layer.unwrapScoped(
  Effect.gen(function* () {
    const host = yield* Config.string("SANDBOX_HOST").pipe(Config.withDefault("127.0.0.1"))
    const port = yield* Config.integer("SANDBOX_PORT").pipe(Config.withDefault(0))
    const seed = yield* Config.integer("SANDBOX_SEED").pipe(Config.withDefault(42))
    const profile = yield* Config.literal("realistic", "instant")("SANDBOX_PROFILE").pipe(Config.withDefault("realistic"))
    const knobs = profile === "realistic" ? realisticKnobs : {}
    const sandbox = yield* SandboxThread.start({ host, port, seed, knobs }).pipe(Effect.orDie)
    yield* Effect.logInfo(`no upstream URL set: using the embedded sandbox at ${sandbox.url} (knobs: ${sandbox.url}/__knobs)`)
    return clients.pipe(
      Layer.provide(
        Layer.mergeAll(
          httpClient,
          UpstreamConfig.allAt(sandbox.url, { llmApiKey: Redacted.make("sandbox"), newsApiKey: Redacted.make("sandbox") }),
          sandboxCredentials
        )
      ),
      Layer.merge(Layer.succeed(UpstreamMode, { embeddedSandbox: Option.some(sandbox.url) }))
    )
  })
)

/** The clients, at the configured URLs or at the embedded sandbox, and the upstream budgets they share. */
export const layer = Layer.unwrapEffect(
  Effect.map(anyUrlSet, (configured) => (configured ? external : embedded))
).pipe(Layer.provideMerge(UpstreamBudgets.layer))
