/**
 * The stock forum: logs each KOL account in (tokens cached per account and shared by every item of
 * that account, one login in flight at a time) and fetches an article's interaction counts.
 * A 401 on a cached token triggers exactly one fresh login for that call.
 *
 * Every call counts against the forum's budget: each interactions call through the `guard` its caller
 * passes (an item's attempt pipeline), each login through the budget directly, at high priority, as a
 * tenant of its own. A login is never made while holding an item's permit: an item gets its token
 * first, then waits for admission, so items holding every permit can never wait on a login that
 * needs one.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Clock, Context, Deferred, Duration, Effect, Exit, Layer, Redacted, Schema, Scope, SynchronizedRef } from "effect"
import { Interactions } from "../domain/Kinds.js"
import * as Budget from "../engine/Budget.js"
import { AttemptTimeout, Permanent, type TaskError } from "../engine/Errors.js"
import { UpstreamBudgets } from "./Budgets.js"
import { jsonCall } from "./http.js"
import { KolCredentials } from "./KolCredentials.js"
import { clientForCalls, spanWhen, tracingOn } from "./tracing.js"
import { forumLoginTimeout, maxRetryAfter, UpstreamConfig } from "./UpstreamConfig.js"

/** What `interactions` returns (the schema is the contract's, in `domain/`). */
export { Interactions }

const LoginResponse = Schema.Struct({ token: Schema.String, expiresIn: Schema.Number })
// Decoders compiled once, not per call.
const loginCall = jsonCall(LoginResponse)
const interactionsCall = jsonCall(Interactions)

/** Wraps each call to the upstream: the caller's attempt pipeline (budget → breaker → call). */
export type Guard = <A>(call: Effect.Effect<A, TaskError>) => Effect.Effect<A, TaskError>

export interface ForumClientService {
  readonly interactions: (kolSerial: string, articleId: string, guard?: Guard) => Effect.Effect<Interactions, TaskError>
}

export class ForumClient extends Context.Tag("parallel-processor/ForumClient")<ForumClient, ForumClientService>() {
  static readonly layer: Layer.Layer<ForumClient, never, HttpClient.HttpClient | UpstreamConfig | KolCredentials | UpstreamBudgets> =
    Layer.scoped(
      ForumClient,
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        const { forumUrl } = yield* UpstreamConfig
        const credentials = yield* KolCredentials
        const scope = yield* Effect.scope
        const { forum } = yield* UpstreamBudgets
        return yield* makeForumClient(client, forumUrl, credentials, scope, forum, {
          loginTimeout: yield* forumLoginTimeout,
          maxCooldown: yield* maxRetryAfter
        })
      })
    )
}

interface Token {
  readonly value: Redacted.Redacted
  readonly expiresAt: number
  /** A GET carrying this token, built once: each call only sets its URL. */
  readonly authorized: HttpClientRequest.HttpClientRequest
}

interface Entry {
  readonly token: Deferred.Deferred<Token, TaskError>
  /** Set by the login fiber when it ends, so lookups can tell a usable token from a failed login. */
  outcome: Token | "failed" | undefined
}

/** The forum refused the token (revoked, expired early): worth one fresh login. */
const isUnauthorized = (e: TaskError): boolean => e._tag === "Permanent" && e.status === 401

/** A login is given this long before it counts as a timeout (it is shared, so no item's timeout applies). */
const LOGIN_TIMEOUT = Duration.seconds(30)

export interface ForumClientOptions {
  /** How long one login call may take before it fails as a timeout. Default 30 s. */
  readonly loginTimeout?: Duration.DurationInput
  /**
   * The longest a login waits out the forum budget's pause (the items waiting for it would wait as
   * long); past it the login fails `RateLimited` at once. Default: no limit.
   */
  readonly maxCooldown?: Duration.DurationInput
}
/** Tokens are renewed this long before they expire, so a call never starts with a token about to lapse. */
const EXPIRY_MARGIN_MS = 30_000

export const makeForumClient = (
  httpClient: HttpClient.HttpClient,
  baseUrl: string,
  credentials: KolCredentials["Type"],
  scope: Scope.Scope,
  budget?: Budget.Budget,
  options: ForumClientOptions = {}
): Effect.Effect<ForumClientService> =>
  Effect.gen(function* () {
    const client = yield* clientForCalls(httpClient)
    const tracing = yield* tracingOn
    const entries = yield* SynchronizedRef.make(new Map<string, Entry>())
    const logins = Budget.tenant("forum-login", "high")
    const loginTimeout = Duration.decode(options.loginTimeout ?? LOGIN_TIMEOUT)
    const hooks: Budget.Hooks = options.maxCooldown === undefined ? {} : { maxCooldownMs: Duration.toMillis(options.maxCooldown) }
    const admitLogin: Guard = budget === undefined ? (call) => call : (call) => budget.admit(logins, hooks)(call)

    const login = (kolSerial: string): Effect.Effect<Token, TaskError> =>
      Effect.gen(function* () {
        const { email, password } = yield* credentials.get(kolSerial)
        const request = HttpClientRequest.post(`${baseUrl}/auth/login`).pipe(
          HttpClientRequest.bodyUnsafeJson({ email, password: Redacted.value(password) })
        )
        // The login timeout covers the call, not the wait for the forum budget's admission. A login
        // that times out is a timeout like any other (it was a Permanent: every item waiting on it
        // failed `upstream_rejected` at once, never retried): the items retry as timeouts, and the
        // next try of any of them logs in afresh (a failed login is not cached).
        const call = loginCall(client, request, `forum login for KOL ${kolSerial}`).pipe(
          Effect.timeoutFail({
            duration: loginTimeout,
            onTimeout: () =>
              new AttemptTimeout({ message: `forum login for KOL ${kolSerial} timed out after ${Duration.format(loginTimeout)}` })
          })
        )
        const answer = yield* admitLogin(call).pipe(
          Effect.catchTag("Permanent", (e) =>
            Effect.fail(
              e.status === 401 || e.status === 403
                ? new Permanent({ message: `forum rejected the credentials of KOL ${kolSerial}`, status: e.status })
                : e
            )
          )
        )
        const now = yield* Clock.currentTimeMillis
        const value = Redacted.make(answer.token)
        return {
          value,
          expiresAt: now + answer.expiresIn * 1000,
          authorized: HttpClientRequest.get(baseUrl).pipe(HttpClientRequest.bearerToken(value))
        }
      }).pipe(Effect.withSpan("ForumClient.login"), Effect.annotateLogs({ kol: kolSerial }))

    const usable = (outcome: Token | "failed" | undefined, stale: Token | undefined, now: number): outcome is Token =>
      outcome !== undefined && outcome !== "failed" && outcome !== stale && outcome.expiresAt - EXPIRY_MARGIN_MS > now

    /**
     * The token for an account: the cached one while valid, else the login already in flight, else
     * a new login. The login runs in the client's own scope, so an item timing out while waiting
     * does not cancel the login the other items are waiting for.
     */
    const renewToken = (kolSerial: string, now: number, stale?: Token): Effect.Effect<Token, TaskError> =>
      SynchronizedRef.modifyEffect(entries, (map) => {
        const current = map.get(kolSerial)
        const outcome = current?.outcome
        if (current !== undefined && (outcome === undefined || usable(outcome, stale, now))) {
          // still logging in (wait for it), or another item renewed it meanwhile
          return Effect.succeed([current.token, map] as const)
        }
        return Effect.gen(function* () {
          const entry: Entry = { token: yield* Deferred.make<Token, TaskError>(), outcome: undefined }
          yield* login(kolSerial).pipe(
            Effect.onExit((exit) =>
              Effect.sync(() => {
                entry.outcome = Exit.isSuccess(exit) ? exit.value : "failed"
              })
            ),
            Effect.intoDeferred(entry.token),
            Effect.forkIn(scope)
          )
          const next = new Map(map)
          next.set(kolSerial, entry)
          return [entry.token, next] as const
        })
      }).pipe(Effect.flatMap(Deferred.await))

    // Almost every call finds a valid token: read it without taking the map's lock (which every
    // item of a batch would otherwise queue on) and without waiting on its Deferred.
    const tokenFor = (kolSerial: string, stale?: Token): Effect.Effect<Token, TaskError> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(SynchronizedRef.get(entries), (map) => {
          const outcome = map.get(kolSerial)?.outcome
          return usable(outcome, stale, now) ? Effect.succeed(outcome) : renewToken(kolSerial, now, stale)
        })
      )

    const fetchInteractions = (token: Token, articleId: string) =>
      interactionsCall(
        client,
        HttpClientRequest.setUrl(token.authorized, `${baseUrl}/articles/${encodeURIComponent(articleId)}/interactions`),
        `forum interactions for article ${articleId}`
      )

    // The token was revoked or expired early: log in again, once.
    const withFreshToken = (kolSerial: string, articleId: string, guard: Guard, stale: Token) =>
      Effect.flatMap(tokenFor(kolSerial, stale), (fresh) =>
        guard(fetchInteractions(fresh, articleId)).pipe(
          Effect.catchIf(
            isUnauthorized,
            () => Effect.fail(new Permanent({ message: `forum rejected a fresh token of KOL ${kolSerial}`, status: 401 }))
          )
        )
      )

    const span = spanWhen(tracing, "ForumClient.interactions")
    const interactions = (kolSerial: string, articleId: string, guard: Guard = (call) => call): Effect.Effect<Interactions, TaskError> =>
      span(
        Effect.flatMap(tokenFor(kolSerial), (token) =>
          guard(fetchInteractions(token, articleId)).pipe(
            Effect.catchIf(isUnauthorized, () => withFreshToken(kolSerial, articleId, guard, token))
          )
        )
      )

    return { interactions }
  })
