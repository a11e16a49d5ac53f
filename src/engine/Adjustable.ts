/**
 * A setting that can change while runs are using it — an operator raising a processor's concurrency
 * or shortening its timeout mid-batch. Runs follow `changes` and apply the new value at once.
 */
import { Effect, Stream, SubscriptionRef } from "effect"

export interface Adjustable<A> {
  readonly get: Effect.Effect<A>
  readonly set: (value: A) => Effect.Effect<void>
  /** The current value, then every change. */
  readonly changes: Stream.Stream<A>
}

export const make = <A>(initial: A): Effect.Effect<Adjustable<A>> =>
  Effect.map(SubscriptionRef.make(initial), (ref) => ({
    get: SubscriptionRef.get(ref),
    set: (value) => SubscriptionRef.set(ref, value),
    changes: ref.changes
  }))

export const isAdjustable = <T, A>(u: T | Adjustable<A>): u is Adjustable<A> =>
  typeof u === "object" && u !== null && "changes" in u && "set" in u && "get" in u
