/**
 * The outcome of one input item: what the engine returns for every item of a run, whatever happened
 * to it. A run never fails as a whole because an item failed; each item carries its own status.
 */
import { Schema } from "effect";
import { errorTypes } from "./Errors.js";
export const isSucceeded = (result) => result.status === "succeeded";
export const summarize = (results) => {
    let total = 0;
    let succeeded = 0;
    let failed = 0;
    let cancelled = 0;
    let skipped = 0;
    for (const r of results) {
        total++;
        if (r.status === "succeeded")
            succeeded++;
        else if (r.status === "failed")
            failed++;
        else if (r.status === "cancelled")
            cancelled++;
        else
            skipped++;
    }
    return { total, succeeded, failed, cancelled, skipped };
};
export const ItemErrorSchema = Schema.Struct({
    type: Schema.Literal(...errorTypes),
    message: Schema.String,
    retryable: Schema.Boolean,
    retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true })
});
const common = {
    index: Schema.Number,
    id: Schema.optionalWith(Schema.String, { exact: true }),
    attempts: Schema.Number,
    durationMs: Schema.Number
};
/** Wire schema of an `ItemResult` whose success value is described by `value`. */
export const schema = (value) => Schema.Union(Schema.Struct({ ...common, status: Schema.Literal("succeeded"), value }), Schema.Struct({
    ...common,
    status: Schema.Literal("failed", "cancelled", "skipped"),
    error: ItemErrorSchema
}));
