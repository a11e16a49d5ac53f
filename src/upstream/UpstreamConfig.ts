/**
 * Where the upstreams are and the secrets to call them, read once from the environment through
 * `Config`. Secrets stay `Redacted`, so they never print in logs, errors or responses.
 */
import { Config, Context, Duration, Effect, Layer, Option, type Redacted } from "effect"

export interface UpstreamSettings {
  /** `FORUM_API_URL` */
  readonly forumUrl: string
  /** `LLM_BASE_URL`, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama). */
  readonly llmBaseUrl: string
  /** `LLM_API_KEY` (optional: local servers often need none). */
  readonly llmApiKey: Option.Option<Redacted.Redacted>
  /** `LLM_MODEL`, default `gpt-4o-mini`. */
  readonly llmModel: string
  /** `MARKET_API_URL` */
  readonly marketUrl: string
  /** `NEWS_API_URL` */
  readonly newsUrl: string
  /** `NEWS_API_KEY` */
  readonly newsApiKey: Option.Option<Redacted.Redacted>
}

const trimSlash = (url: string) => url.replace(/\/+$/, "")

export const settingsConfig: Config.Config<UpstreamSettings> = Config.all({
  forumUrl: Config.string("FORUM_API_URL").pipe(Config.map(trimSlash)),
  llmBaseUrl: Config.string("LLM_BASE_URL").pipe(Config.map(trimSlash)),
  llmApiKey: Config.option(Config.redacted("LLM_API_KEY")),
  llmModel: Config.string("LLM_MODEL").pipe(Config.withDefault("gpt-4o-mini")),
  marketUrl: Config.string("MARKET_API_URL").pipe(Config.map(trimSlash)),
  newsUrl: Config.string("NEWS_API_URL").pipe(Config.map(trimSlash)),
  newsApiKey: Config.option(Config.redacted("NEWS_API_KEY"))
})

export class UpstreamConfig extends Context.Tag("parallel-processor/UpstreamConfig")<UpstreamConfig, UpstreamSettings>() {
  /** From the environment (`FORUM_API_URL`, `LLM_BASE_URL`, …). */
  static readonly fromEnv = Layer.effect(UpstreamConfig, settingsConfig)

  /** Every upstream at one base URL (the sandbox serves all four), with optional keys. */
  static readonly allAt = (
    baseUrl: string,
    keys: { readonly llmApiKey?: Redacted.Redacted; readonly newsApiKey?: Redacted.Redacted; readonly llmModel?: string } = {}
  ) =>
    Layer.succeed(UpstreamConfig, {
      forumUrl: trimSlash(baseUrl),
      llmBaseUrl: trimSlash(baseUrl),
      llmApiKey: Option.fromNullable(keys.llmApiKey),
      llmModel: keys.llmModel ?? "gpt-4o-mini",
      marketUrl: trimSlash(baseUrl),
      newsUrl: trimSlash(baseUrl),
      newsApiKey: Option.fromNullable(keys.newsApiKey)
    })
}


/** A duration setting written as Effect does (`60 seconds`, `500 millis`) or as plain seconds (`60`, `0.5`). */
const durationOrSeconds = (name: string): Config.Config<Duration.Duration> =>
  Config.duration(name).pipe(
    Config.orElse(() =>
      Config.number(name).pipe(
        Config.validate({ message: "must be a duration (e.g. 60 seconds) or a number of seconds ≥ 0", validation: (n) => n >= 0 }),
        Config.map(Duration.seconds)
      )
    )
  )

/**
 * `MAX_RETRY_AFTER` (default 60 s): the longest wait an upstream may ask for (`Retry-After`, reset
 * headers). Past it an item is not retried but fails `rate_limited` with `retryAfterMs`, and nothing
 * waits out a budget's pause longer than it: a sync request is never held for the ten minutes an
 * upstream asked for. An invalid value keeps the default, with a warning.
 */
export const maxRetryAfter: Effect.Effect<Duration.Duration> = durationOrSeconds("MAX_RETRY_AFTER").pipe(
  Config.withDefault(Duration.seconds(60)),
  Effect.tapError((error) => Effect.logWarning(`ignoring invalid MAX_RETRY_AFTER: ${error.message}`)),
  Effect.orElseSucceed(() => Duration.seconds(60))
)

/**
 * `FORUM_LOGIN_TIMEOUT` (default 30 s): how long one forum login call may take. A login is shared by
 * every item of its account, so no item's attempt timeout applies to it.
 */
export const forumLoginTimeout: Effect.Effect<Duration.Duration> = durationOrSeconds("FORUM_LOGIN_TIMEOUT").pipe(
  Config.validate({ message: "must be longer than 0", validation: (d) => Duration.toMillis(d) > 0 }),
  Config.withDefault(Duration.seconds(30)),
  Effect.tapError((error) => Effect.logWarning(`ignoring invalid FORUM_LOGIN_TIMEOUT: ${error.message}`)),
  Effect.orElseSucceed(() => Duration.seconds(30))
)
