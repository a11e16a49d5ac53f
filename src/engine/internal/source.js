/**
 * Where a run's items come from: pulled one at a time by whichever worker is free, so memory stays
 * bounded by concurrency rather than by the number of items.
 */
import { Chunk, Effect, Option, Stream } from "effect";
const finished = { done: true, value: undefined };
export const fromIterable = (items) => {
    const iterator = items[Symbol.iterator]();
    let ended = false;
    const pullSync = () => {
        if (ended)
            return finished;
        const next = iterator.next();
        if (next.done === true)
            ended = true;
        return next;
    };
    return {
        pull: Effect.sync(() => {
            const next = pullSync();
            return next.done === true ? Option.none() : Option.some(next.value);
        }),
        pullSync,
        total: Array.isArray(items) ? items.length : undefined
    };
};
/** Pulls the stream chunk by chunk; concurrent pulls are serialized so no element is lost or doubled. */
export const fromStream = (stream) => Effect.gen(function* () {
    const pullChunk = yield* Stream.toPull(stream);
    const lock = yield* Effect.makeSemaphore(1);
    let buffer = [];
    let position = 0;
    let ended = false;
    const next = Effect.suspend(() => {
        if (position < buffer.length) {
            const item = buffer[position++];
            return item === undefined ? Effect.succeedNone : Effect.succeedSome(item);
        }
        if (ended)
            return Effect.succeedNone;
        return Effect.matchEffect(pullChunk, {
            onFailure: Option.match({
                onNone: () => {
                    ended = true;
                    return Effect.succeedNone;
                },
                onSome: (error) => Effect.fail(error)
            }),
            onSuccess: (chunk) => {
                buffer = Chunk.toReadonlyArray(chunk);
                position = 0;
                return next;
            }
        });
    });
    return { pull: lock.withPermits(1)(next), pullSync: undefined, total: undefined };
});
