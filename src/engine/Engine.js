/**
 * The library surface: run many calls to slow, flaky upstreams in parallel under a `Policy`, and get
 * one `ItemResult` per input — as an array in input order (`run`), as a stream in completion order
 * (`stream`), or as a stream of progress events (`events`).
 *
 * @example
 * const results = yield* Engine.run(articleIds, (id) => fetchInteractions(id), {
 *   maxConcurrent: 3,
 *   attemptTimeout: "30 seconds"
 * })
 */
import { Effect, Exit, Mailbox, Stream } from "effect";
import * as Policy from "./Policy.js";
import { isAdjustable } from "./Adjustable.js";
import * as Pool from "./internal/pool.js";
import * as Source from "./internal/source.js";
const newRunId = Effect.sync(() => globalThis.crypto.randomUUID());
const executeOptions = (runId, options, onResult, onEvent) => ({
    runId,
    idOf: options.idOf,
    onResult,
    onEvent,
    cancelled: options.control?.cancelled
});
const annotate = (runId, policy) => Effect.annotateLogs({ run: runId, processor: policy.name });
/**
 * Run every item through `task` and return one result per item, in input order, plus the summary.
 * Never fails because items failed.
 */
export const runWithSummary = (items, task, policy = {}, options = {}) => Effect.flatMap(options.runId === undefined ? newRunId : Effect.succeed(options.runId), (runId) => {
    const full = Policy.make(policy);
    const results = [];
    const collect = (result) => {
        results[result.index] = result;
    };
    return Pool.execute(Source.fromIterable(items), task, full, {
        ...executeOptions(runId, options, (result) => Effect.sync(() => collect(result)), options.onEvent),
        collect
    }).pipe(Effect.map((summary) => ({ results, summary })), annotate(runId, full));
});
/** Run every item through `task`; one result per item, in input order. Never fails because items failed. */
export const run = (items, task, policy = {}, options = {}) => Effect.map(runWithSummary(items, task, policy, options), (r) => r.results);
const bufferFor = (policy) => Math.max(16, 2 * (isAdjustable(policy.maxConcurrent) ? 16 : policy.maxConcurrent));
const isStream = (items) => Stream.StreamTypeId in items;
export function stream(items, task, policy = {}, options = {}) {
    return Stream.unwrapScoped(Effect.gen(function* () {
        const full = Policy.make(policy);
        const runId = options.runId ?? (yield* newRunId);
        const mailbox = yield* Mailbox.make(bufferFor(full));
        const source = isStream(items) ? yield* Source.fromStream(items) : Source.fromIterable(items);
        yield* Pool.execute(source, task, full, executeOptions(runId, options, (result) => Effect.asVoid(mailbox.offer(result)), options.onEvent)).pipe(annotate(runId, full), Effect.exit, Effect.flatMap((exit) => mailbox.done(Exit.asVoid(exit))), Effect.forkScoped);
        return Mailbox.toStream(mailbox);
    }));
}
export function events(items, task, policy = {}, options = {}) {
    return Stream.unwrapScoped(Effect.gen(function* () {
        const full = Policy.make(policy);
        const runId = options.runId ?? (yield* newRunId);
        const mailbox = yield* Mailbox.make(bufferFor(full));
        const source = isStream(items) ? yield* Source.fromStream(items) : Source.fromIterable(items);
        const onEvent = (event) => Effect.asVoid(mailbox.offer(event));
        yield* Pool.execute(source, task, full, executeOptions(runId, options, () => Effect.void, onEvent)).pipe(annotate(runId, full), Effect.exit, Effect.flatMap((exit) => mailbox.done(Exit.asVoid(exit))), Effect.forkScoped);
        return Mailbox.toStream(mailbox);
    }));
}
