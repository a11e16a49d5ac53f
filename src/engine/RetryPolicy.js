/**
 * When to try an item again, per class of failure ("smart retry"). Each class has its own `Schedule`;
 * server-provided waits (`Retry-After`, an open breaker's recovery time) take precedence over the
 * schedule. Permanent failures and invalid responses are never retried.
 */
import { Duration, Effect, Option, Random, Schedule, ScheduleDecision, ScheduleIntervals } from "effect";
/** Exponential backoff from `base`, multiplied by `factor` each time, jittered ±20%, never above `cap`. */
export const exponentialCapped = (options) => {
    const cap = Duration.decode(options.cap);
    return Schedule.exponential(options.base, options.factor ?? 2).pipe(Schedule.jittered, Schedule.modifyDelay((_, delay) => Duration.min(delay, cap)));
};
/** A fixed wait between tries, jittered ±20%. */
export const fixedJittered = (delay) => Schedule.spaced(delay).pipe(Schedule.jittered);
export const defaults = {
    maxRetries: 3,
    schedules: {
        timeout: exponentialCapped({ base: "1 second", factor: 2, cap: "30 seconds" }),
        rate_limited: fixedJittered("60 seconds"),
        transient: fixedJittered("5 seconds"),
        circuit_open: fixedJittered("5 seconds")
    },
    serverDelayJitter: 0.1
};
/** The default policy with some fields replaced. */
export const make = (overrides = {}) => ({
    maxRetries: overrides.maxRetries ?? defaults.maxRetries,
    schedules: { ...defaults.schedules, ...overrides.schedules },
    serverDelayJitter: overrides.serverDelayJitter ?? defaults.serverDelayJitter
});
/** The retry class of an error, or `undefined` when that error is never retried. */
export const classOf = (error) => {
    switch (error._tag) {
        case "AttemptTimeout":
            return "timeout";
        case "RateLimited":
            return "rate_limited";
        case "Transient":
            return "transient";
        case "CircuitOpen":
            return "circuit_open";
        default:
            return undefined;
    }
};
const serverDelay = (error) => error._tag === "RateLimited" ? error.retryAfter : error._tag === "CircuitOpen" ? error.retryAfter : undefined;
/**
 * The wait before the next try of an item that just failed with `error`, or `None` when it must not
 * be retried (class never retried, or its schedule is exhausted). Does not check `maxRetries`.
 */
export const nextDelay = (policy, error, state, now) => {
    const cls = classOf(error);
    if (cls === undefined)
        return Effect.succeedNone;
    const schedule = policy.schedules[cls];
    const given = serverDelay(error);
    if (given !== undefined) {
        const base = Duration.toMillis(given);
        // The schedule still steps so that its own limits (e.g. `Schedule.recurs`) keep applying.
        return Effect.flatMap(schedule.step(now, error, state[cls] ?? schedule.initial), ([next, , decision]) => {
            if (ScheduleDecision.isDone(decision))
                return Effect.succeedNone;
            state[cls] = next;
            return Effect.map(Random.next, (r) => Option.some(base + base * policy.serverDelayJitter * r));
        });
    }
    return Effect.map(schedule.step(now, error, state[cls] ?? schedule.initial), ([next, , decision]) => {
        if (ScheduleDecision.isDone(decision))
            return Option.none();
        state[cls] = next;
        return Option.some(Math.max(0, ScheduleIntervals.start(decision.intervals) - now));
    });
};
