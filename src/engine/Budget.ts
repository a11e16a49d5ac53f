/**
 * An upstream budget: how many calls may be in flight against one upstream, from every run that
 * shares it. A job's `maxConcurrent` caps the job; the budget caps everyone (the guide's processors
 * were process-wide singletons whose semaphore protected the upstream from all requests together).
 *
 * - a **ceiling** the calls in flight never exceed;
 * - an **adaptive limit** in [1, ceiling] moved by what the upstream answers (`LimitAlgorithm`);
 * - a shared **cooldown**: a 429/503 that says when to come back pauses admission for everyone
 *   until then (calls in flight finish, nobody starts one);
 * - an optional request **rate**;
 * - **fair share**: permits go to the highest priority level first and round-robin between the
 *   tenants (jobs, runs) waiting within it, so a small batch is not queued behind a big one.
 *
 * Waiting for admission holds nothing: no breaker probe, no attempt timeout, not in flight.
 *
 * Over 300 lines on purpose: the public interfaces (options, settings, snapshot, hooks) and one
 * `make` closure (~300 lines) over the budget's mutable state — ceiling, share, estimator, cooldown,
 * counters — that admission, learning and `update` read and change in the same synchronous steps
 * (split into modules it would become a state object passed everywhere on every call's path).
 * The separable concepts live beside it: the admission queue (internal/budget.ts), tenants
 * (internal/tenant.ts), the rate (internal/rate.ts) and the reading of errors (internal/verdict.ts),
 * all re-exported here.
 *
 * @example
 * const forum = yield* Budget.make({ key: "forum", ceiling: 5 })
 * yield* Engine.run(posts, fetchInteractions, { maxConcurrent: 3, budget: forum })
 */
import { Duration, Effect, PubSub, Random, type Scope, Stream } from "effect"
import * as EngineMetrics from "./EngineMetrics.js"
import { RateLimited } from "./Errors.js"
import { makeQueue, type Waiter } from "./internal/budget.js"
import type { Rate } from "./internal/rate.js"
import { priorities, type Tenant } from "./internal/tenant.js"
import { verdictOf, type Verdict } from "./internal/verdict.js"
import * as LimitAlgorithm from "./LimitAlgorithm.js"

export { awaitIdle, priorities, stop, tenant, type Priority, type Tenant } from "./internal/tenant.js"
export { formatRate, parseRate, type Rate } from "./internal/rate.js"
export { verdictOf, type Verdict } from "./internal/verdict.js"

export interface Options {
  /** The upstream's name, in logs and metric tags (`forum`, `llm`, …). */
  readonly key: string
  /** Calls in flight never exceed it. */
  readonly ceiling: number
  /** How the current limit moves. Default `LimitAlgorithm.gradient()`. */
  readonly algorithm?: LimitAlgorithm.LimitAlgorithm
  /** `false` pins the limit at the ceiling. Default true. */
  readonly adaptive?: boolean
  /** Calls started per period, on top of the concurrency limit. Default: none. */
  readonly rate?: Rate
  /** Random extra cooldown, as a fraction of the wait the upstream asked for (capped at 250 ms). Default 0.05. */
  readonly cooldownJitter?: number
  /**
   * Admission only: outcomes teach it nothing (no adaptation, no cooldown) — for a limit that is not
   * an upstream's, like a job's cluster-wide share. Default false.
   */
  readonly passive?: boolean
}

export interface Settings {
  readonly ceiling?: number
  readonly adaptive?: boolean
  /** `null` removes the rate. */
  readonly rate?: Rate | null
  /**
   * This process's part of a ceiling held by several processes together (0 allowed: nothing may
   * start here until it grows). `null` removes it. Set by the cluster, not by operators.
   */
  readonly share?: number | null
}

export interface Snapshot {
  readonly key: string
  readonly ceiling: number
  /** With several processes sharing the ceiling: this one's part of it. */
  readonly share: number | undefined
  /** The current (adaptive) limit, within the share. */
  readonly limit: number
  readonly inFlight: number
  /** Calls waiting for admission, and the tenants (jobs) they belong to. */
  readonly waiting: number
  readonly waitingTenants: number
  /** Admission is paused until then (epoch ms on the budget's clock), when in a cooldown. */
  readonly cooldownUntil: number | undefined
  readonly rate: Rate | undefined
  readonly algorithm: string
  readonly adaptive: boolean
  /** Calls answered 429 so far. */
  readonly throttled: number
  readonly cooldowns: number
}

export type Change =
  | { readonly _tag: "Cooldown"; readonly key: string; readonly until: number }
  | { readonly _tag: "Limit"; readonly key: string; readonly limit: number; readonly at: number }

export interface Hooks {
  /** Called synchronously the moment the call is admitted (before it starts). */
  readonly onAdmit?: () => void
  /** Asked when the call was interrupted: whether its attempt timed out (that is push-back). */
  readonly timedOut?: () => boolean
  /**
   * The longest this call will wait out a cooldown: when the pause left is longer — at the call's
   * arrival or because a cooldown began or grew while it waited — the call leaves the queue and
   * fails at once with `RateLimited` whose `retryAfter` is the pause left (nothing was sent). A
   * wait for a permit or a rate token is not limited by it. Default: none.
   */
  readonly maxCooldownMs?: number
}

export interface Budget {
  readonly key: string
  /**
   * Runs `call` once admitted: waits (interruptibly, fairly, holding nothing) for a permit, holds it
   * while the call runs, and learns from how the call ended. Fails with `RateLimited` without
   * calling only when the cooldown is longer than `hooks.maxCooldownMs`.
   */
  readonly admit: (t: Tenant, hooks?: Hooks) => <A, E, R>(call: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R>
  readonly snapshot: Effect.Effect<Snapshot>
  readonly update: (settings: Settings) => Effect.Effect<void>
  /** Pauses admission until `until` (epoch ms), unless already paused longer — e.g. a cooldown seen by another instance. */
  readonly cooldown: (until: number) => Effect.Effect<void>
  /** Milliseconds left in the current cooldown (0 when none). */
  readonly cooldownRemaining: () => number
  /** Cooldowns begun by this budget's own calls, and limit changes, from now on. */
  readonly changes: Effect.Effect<Stream.Stream<Change>, never, Scope.Scope>
  /** Calls in flight plus calls waiting: what this process would use if it could. */
  readonly demand: () => number
  /** Calls in flight right now. */
  readonly inFlight: () => number
  /** Called (synchronously) when a call has to wait because every permit is in use — e.g. to ask the cluster for a bigger share now. */
  readonly onDemand: (listener: (() => void) | undefined) => void
}

export const make = (options: Options): Effect.Effect<Budget, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { key } = options
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const algorithm = options.algorithm ?? LimitAlgorithm.gradient()
    let ceiling = Math.max(1, Math.floor(options.ceiling))
    let share: number | undefined = undefined
    const passive = options.passive ?? false
    let adaptive = (options.adaptive ?? true) && !passive
    const effectiveCeiling = () => (share === undefined ? ceiling : Math.min(ceiling, share))
    let estimator = algorithm.make(ceiling, now())
    let demandListener: (() => void) | undefined = undefined
    const jitter = options.cooldownJitter ?? 0.05
    let throttled = 0
    let cooldowns = 0
    // A passive budget (a job's share) is not an upstream: no metrics (their labels would grow with every job).
    const metrics = options.passive === true ? undefined : EngineMetrics.forBudget(key)
    const changes = yield* Effect.acquireRelease(PubSub.unbounded<Change>(), PubSub.shutdown)

    // The share may be 0 (nothing may start here); the adaptive limit never goes below 1 of it.
    const limit = () => {
      const top = effectiveCeiling()
      return adaptive ? Math.min(top, Math.max(1, Math.floor(estimator.limit()))) : top
    }
    let announced = limit()

    // One fiber wakes the queue when a cooldown ends or a rate token is due (re-checking at least
    // every 100 ms, so a wake-up time that moves earlier is never missed for long).
    let wakeTarget = Number.POSITIVE_INFINITY
    let tickerParked: (() => void) | undefined
    // The in-flight and waiting gauges, after any change to either.
    const gauges = () => {
      metrics?.inFlight.unsafeUpdate(queue.state.held, EngineMetrics.noExtraTags)
      metrics?.waiting.unsafeUpdate(queue.waiting(), EngineMetrics.noExtraTags)
    }
    const queue = makeQueue({
      levels: priorities,
      now,
      limit,
      wakeAt: (at) => {
        if (at < wakeTarget) wakeTarget = at
        const resume = tickerParked
        if (resume !== undefined) {
          tickerParked = undefined
          resume()
        }
      },
      changed: () => gauges(),
      blocked: () => demandListener?.()
    })
    if (options.rate !== undefined) queue.setRate(options.rate, ceiling)
    const ticker: Effect.Effect<void> = Effect.suspend(() => {
      if (!Number.isFinite(wakeTarget)) {
        return Effect.zipRight(
          Effect.async<void>((resume) => {
            tickerParked = () => resume(Effect.void)
            return Effect.sync(() => {
              tickerParked = undefined
            })
          }),
          ticker
        )
      }
      // Whole milliseconds: a clock may report whole milliseconds only, and a fractional wait would never arrive.
      const ms = Math.min(100, Math.ceil(wakeTarget - now()))
      return Effect.zipRight(
        ms > 0 ? Effect.sleep(Duration.millis(ms)) : Effect.void,
        Effect.suspend(() => {
          if (now() >= wakeTarget) wakeTarget = Number.POSITIVE_INFINITY
          queue.grant()
          return ticker
        })
      )
    })
    yield* Effect.forkScoped(Effect.interruptible(ticker))
    metrics?.limit.unsafeUpdate(announced, EngineMetrics.noExtraTags)

    /** Waiters with a `maxCooldownMs`: each checks the pause left against it and leaves if it is longer. */
    const capped = new Set<() => void>()
    const startCooldown = (until: number, local: boolean): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (until <= queue.state.cooldownUntil) return Effect.void
        queue.state.cooldownUntil = until
        cooldowns++
        metrics?.cooldowns.unsafeUpdate(1, EngineMetrics.noExtraTags)
        for (const check of Array.from(capped)) check()
        queue.grant()
        return Effect.zipRight(
          Effect.logInfo(`upstream ${key}: admission paused for ${Math.round(until - now())} ms`).pipe(
            Effect.annotateLogs({ upstream: key, source: local ? "answer" : "shared" })
          ),
          local ? PubSub.publish(changes, { _tag: "Cooldown", key, until }) : Effect.void
        )
      })

    const limitMoved = Effect.suspend(() => {
      const current = limit()
      if (current === announced) return Effect.void
      const before = announced
      announced = current
      metrics?.limit.unsafeUpdate(current, EngineMetrics.noExtraTags)
      queue.grant()
      return Effect.zipRight(
        passive
          ? Effect.void
          : Effect.logDebug(`upstream ${key}: limit ${before} → ${current} of ${ceiling}`).pipe(Effect.annotateLogs({ upstream: key })),
        PubSub.publish(changes, { _tag: "Limit", key, limit: current, at: now() })
      )
    })

    const learn = (waiter: Waiter, verdict: Verdict): Effect.Effect<void> => {
      if (verdict === undefined || passive) return Effect.void
      const at = now()
      const sample = {
        startedAt: waiter.startedAt,
        now: at,
        inFlight: waiter.inFlight,
        inFlightNow: queue.state.held,
        latencyMs: at - waiter.startedAt
      }
      if (verdict._tag === "success") {
        estimator.onSuccess(sample)
        return announced === limit() ? Effect.void : limitMoved
      }
      estimator.onOverload(sample)
      if (verdict.throttled) {
        throttled++
        metrics?.throttled.unsafeUpdate(1, EngineMetrics.noExtraTags)
      }
      return announced === limit() ? Effect.void : limitMoved
    }

    /**
     * The pause a failed call asked for. Begun before the call's permit is released: released first,
     * the permit went straight to the next waiter, one more call in the very moment the upstream
     * said "stop", and a waiter with a cap was admitted instead of turned away.
     */
    const pauseFor = (verdict: Verdict): Effect.Effect<void> => {
      if (verdict?._tag !== "overload" || verdict.waitMs === undefined || passive) return Effect.void
      const waitMs = verdict.waitMs
      const extra = Math.min(250, waitMs * jitter)
      return Effect.flatMap(Random.next, (r) => startCooldown(Math.ceil(now() + waitMs + extra * r), true))
    }

    const release = (t: Tenant) => {
      queue.release()
      // A passive budget's permit is not a call: an attempt holding it may still be waiting for an
      // upstream's admission, and a drain must not wait for that.
      if (!passive && --t.calling === 0 && t.idleListeners.size > 0) {
        for (const listener of Array.from(t.idleListeners)) listener()
        t.idleListeners.clear()
      }
      gauges()
    }

    /** Admitted, stopped (never starts), or turned away by a cooldown this long (ms) over the caller's cap. */
    type Admission = boolean | { readonly cooldownMs: number }
    const cooldownLeft = () => Math.max(0, queue.state.cooldownUntil - now())

    // No fibers forked per call: this is on every attempt's path.
    const acquire = (t: Tenant, waiter: { current: Waiter | undefined }, maxCooldownMs: number | undefined) =>
      Effect.async<Admission>((resume) => {
        if (t.stopped) return resume(Effect.succeed(false))
        // A pause longer than the caller would wait: turn it away now rather than queue it.
        if (maxCooldownMs !== undefined && cooldownLeft() > maxCooldownMs) {
          return resume(Effect.succeed({ cooldownMs: cooldownLeft() }))
        }
        let check: (() => void) | undefined = undefined
        const w: Waiter = {
          tenant: t,
          granted: false,
          startedAt: 0,
          inFlight: 0,
          wake: (granted) => {
            if (check !== undefined) capped.delete(check)
            resume(Effect.succeed(granted))
          },
          onStop: () => {
            queue.remove(w)
            w.wake(false)
          }
        }
        waiter.current = w
        const admitted = queue.enqueue(w)
        gauges()
        if (admitted) return resume(Effect.succeed(true))
        if (maxCooldownMs !== undefined) {
          // A cooldown that begins or grows while this call waits is checked against its cap then.
          const leave = () => {
            const left = cooldownLeft()
            if (w.granted || left <= maxCooldownMs) return
            queue.remove(w)
            if (check !== undefined) capped.delete(check)
            gauges()
            resume(Effect.succeed({ cooldownMs: left }))
          }
          check = leave
          capped.add(leave)
        }
        // Interrupted while waiting: leave the queue, or pass on a permit granted in the meantime.
        return Effect.sync(() => {
          if (check !== undefined) capped.delete(check)
          if (w.granted) {
            w.granted = false
            queue.release()
          } else queue.remove(w)
          gauges()
        })
      })

    const admit = (t: Tenant, hooks?: Hooks) => <A, E, R>(call: Effect.Effect<A, E, R>): Effect.Effect<A, E | RateLimited, R> =>
      Effect.uninterruptibleMask((restore) => {
        const holder: { current: Waiter | undefined } = { current: undefined }
        return Effect.flatMap(restore(acquire(t, holder, hooks?.maxCooldownMs)), (granted): Effect.Effect<A, E | RateLimited, R> => {
          if (typeof granted === "object") {
            const seconds = Math.ceil(granted.cooldownMs / 1000)
            return Effect.fail(
              new RateLimited({
                message: `upstream ${key} asked to pause calls for ${seconds} s, longer than this call may wait (${Math.round((hooks?.maxCooldownMs ?? 0) / 1000)} s); not sent`,
                retryAfter: Duration.millis(granted.cooldownMs)
              })
            )
          }
          const w = holder.current
          if (!granted || w === undefined) return restore(Effect.never)
          if (!passive) t.calling++
          // Granted just before the tenant stopped: hand the permit on, do not start.
          if (t.stopped) {
            release(t)
            return restore(Effect.never)
          }
          hooks?.onAdmit?.()
          return restore(call).pipe(
            Effect.onExit((exit) => {
              if (exit._tag === "Success") {
                release(t)
                return learn(w, { _tag: "success" })
              }
              const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
              if (failure !== undefined) {
                const verdict = verdictOf(failure)
                return Effect.zipRight(
                  pauseFor(verdict),
                  Effect.suspend(() => {
                    release(t)
                    return learn(w, verdict)
                  })
                )
              }
              release(t)
              const interruptedByTimeout = hooks?.timedOut?.() === true
              return interruptedByTimeout ? learn(w, { _tag: "overload", throttled: false, waitMs: undefined }) : Effect.void
            })
          )
        })
      })

    const snapshot = Effect.sync((): Snapshot => {
      const until = queue.state.cooldownUntil
      return {
        key,
        ceiling,
        share,
        limit: limit(),
        inFlight: queue.state.held,
        waiting: queue.waiting(),
        waitingTenants: queue.waitingTenants(),
        cooldownUntil: until > now() ? until : undefined,
        rate: queue.state.rate,
        algorithm: adaptive ? algorithm.name : "fixed",
        adaptive,
        throttled,
        cooldowns
      }
    })

    const update = (settings: Settings) =>
      Effect.suspend(() => {
        if (settings.ceiling !== undefined) ceiling = Math.max(1, Math.floor(settings.ceiling))
        if (settings.share !== undefined) share = settings.share === null ? undefined : Math.max(0, Math.floor(settings.share))
        if (settings.ceiling !== undefined || settings.share !== undefined) estimator.setCeiling(Math.max(1, effectiveCeiling()))
        if (settings.adaptive !== undefined && settings.adaptive !== adaptive && !passive) {
          adaptive = settings.adaptive
          // Switching adaptation back on starts learning afresh.
          if (adaptive) estimator = algorithm.make(Math.max(1, effectiveCeiling()), now())
        }
        if (settings.rate !== undefined) queue.setRate(settings.rate ?? undefined, ceiling)
        queue.grant()
        return limitMoved
      })

    return {
      key,
      admit,
      snapshot,
      update,
      cooldown: (until) => startCooldown(until, false),
      cooldownRemaining: () => Math.max(0, queue.state.cooldownUntil - now()),
      changes: Effect.map(PubSub.subscribe(changes), Stream.fromQueue),
      demand: () => queue.state.held + queue.waiting(),
      inFlight: () => queue.state.held,
      onDemand: (listener) => {
        demandListener = listener
      }
    }
  })
