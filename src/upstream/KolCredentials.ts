/**
 * Forum login credentials per virtual KOL account, from `KOL_<serial>_EMAIL` / `KOL_<serial>_PASSWORD`.
 * A missing credential fails only the items of that account, as a permanent error that says which
 * variables to set — never the batch, and never with the secret in the message.
 */
import { Config, Context, Effect, Layer, type Redacted } from "effect"
import { Permanent } from "../engine/Errors.js"

export interface Credentials {
  readonly email: string
  readonly password: Redacted.Redacted
}

export class KolCredentials extends Context.Tag("parallel-processor/KolCredentials")<
  KolCredentials,
  { readonly get: (kolSerial: string) => Effect.Effect<Credentials, Permanent> }
>() {
  /** Looked up through the current `ConfigProvider` (the environment by default) on each login. */
  static readonly fromConfig = Layer.succeed(KolCredentials, {
    get: (kolSerial) => {
      const serial = kolSerial.trim()
      if (!/^[A-Za-z0-9_]+$/.test(serial)) {
        return Effect.fail(new Permanent({ message: `invalid KOL serial "${serial.slice(0, 40)}"` }))
      }
      return Config.all({
        email: Config.string(`KOL_${serial}_EMAIL`),
        password: Config.redacted(`KOL_${serial}_PASSWORD`)
      }).pipe(
        Effect.mapError(
          () =>
            new Permanent({
              message: `no forum credentials for KOL ${serial}: set KOL_${serial}_EMAIL and KOL_${serial}_PASSWORD`
            })
        )
      )
    }
  })

  /** Fixed credentials, for tests and embedded setups. */
  static readonly fromRecord = (records: Readonly<Record<string, Credentials>>) =>
    Layer.succeed(KolCredentials, {
      get: (kolSerial) => {
        const found = records[kolSerial]
        return found === undefined
          ? Effect.fail(new Permanent({ message: `no forum credentials for KOL ${kolSerial}` }))
          : Effect.succeed(found)
      }
    })
}
