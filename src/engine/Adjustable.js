/**
 * A setting that can change while runs are using it — an operator raising a processor's concurrency
 * or shortening its timeout mid-batch. Runs follow `changes` and apply the new value at once.
 */
import { Effect, SubscriptionRef } from "effect";
export const make = (initial) => Effect.map(SubscriptionRef.make(initial), (ref) => ({
    get: SubscriptionRef.get(ref),
    set: (value) => SubscriptionRef.set(ref, value),
    changes: ref.changes
}));
export const isAdjustable = (u) => typeof u === "object" && u !== null && "changes" in u && "set" in u && "get" in u;
