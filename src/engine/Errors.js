/**
 * The error taxonomy the engine understands. Upstream clients classify every failure into one of
 * these tagged errors; the engine only ever reads the class to decide whether and when to retry and
 * whether the failure counts against a circuit breaker.
 */
import { Data } from "effect";
/** The attempt did not finish within its per-attempt timeout (or the upstream answered 408). */
export class AttemptTimeout extends Data.TaggedError("AttemptTimeout") {
}
/** The upstream said "slow down" (429). `retryAfter` comes from `Retry-After` or a reset header. */
export class RateLimited extends Data.TaggedError("RateLimited") {
}
/** The upstream is unavailable right now: 5xx, connection refused/reset, DNS failure. */
export class Transient extends Data.TaggedError("Transient") {
}
/** The upstream refused the request for good: 4xx other than 408/429, bad credentials, not found. */
export class Permanent extends Data.TaggedError("Permanent") {
}
/** The upstream answered, but the body did not match its schema. */
export class InvalidResponse extends Data.TaggedError("InvalidResponse") {
}
/** The circuit breaker guarding the upstream is open; nothing was sent. */
export class CircuitOpen extends Data.TaggedError("CircuitOpen") {
}
/** The task decided the item should not be processed (e.g. an account on a skip list). */
export class Skipped extends Data.TaggedError("Skipped") {
}
export const errorTypes = [
    "timeout",
    "rate_limited",
    "upstream_unavailable",
    "upstream_rejected",
    "invalid_response",
    "circuit_open",
    "deadline_exceeded",
    "cancelled",
    "unexpected",
    "skipped"
];
export const errorTypeOf = (error) => {
    switch (error._tag) {
        case "AttemptTimeout":
            return "timeout";
        case "RateLimited":
            return "rate_limited";
        case "Transient":
            return "upstream_unavailable";
        case "Permanent":
            return "upstream_rejected";
        case "InvalidResponse":
            return "invalid_response";
        case "CircuitOpen":
            return "circuit_open";
        case "Skipped":
            return "skipped";
    }
};
/** Whether trying the same item again later could succeed; reported to callers on final errors. */
export const isRetryableType = (type) => {
    switch (type) {
        case "timeout":
        case "rate_limited":
        case "upstream_unavailable":
        case "circuit_open":
        case "deadline_exceeded":
        case "cancelled":
            return true;
        default:
            return false;
    }
};
/**
 * How a breaker should count an outcome. Only failures that say "the upstream is unhealthy" count:
 * a 4xx or a 429 proves the upstream is alive and answering.
 */
export const countsAgainstBreaker = (error) => error._tag === "Transient" || error._tag === "AttemptTimeout";
export const messageOf = (error) => error._tag === "Skipped" ? error.reason : error.message;
