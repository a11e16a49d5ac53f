/**
 * Everything that governs how a run treats its items: how many at once, how long each attempt may
 * take, how failures are retried, the whole-batch deadline, the circuit breaker and rate limit.
 */
import { Duration } from "effect";
import * as RetryPolicy from "./RetryPolicy.js";
export const defaults = {
    name: "default",
    maxConcurrent: 10,
    attemptTimeout: Duration.seconds(30),
    retry: RetryPolicy.defaults,
    whenBreakerOpen: "fail"
};
/** The defaults with some fields replaced. */
export const make = (overrides = {}) => ({ ...defaults, ...overrides });
