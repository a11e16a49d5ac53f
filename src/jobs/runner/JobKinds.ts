/**
 * The kinds of job and how each runs: which processor runs its items, and what a finished item
 * changes besides its own result row (an interactions snapshot of a post, a generated post).
 */
import { Effect, Schema } from "effect"
import type * as Budget from "../../engine/Budget.js"
import type { ItemResult } from "../../engine/ItemResult.js"
import type * as RunControl from "../../engine/RunControl.js"
import { IntradayTriggersProcessor } from "../../processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../../processors/Interactions.js"
import { PostGenerationProcessor } from "../../processors/PostGeneration.js"
import type * as Processor from "../../processors/Processor.js"
import type { ItemEffect } from "../JobStore.js"
import { kindSchemas, type JobKind } from "../Model.js"
import type { RunAdmission } from "../Topology.js"

/** An item that finished in a run: its result (index within the run's inputs), side effect, and the engine's ETA. */
export interface Finished {
  readonly result: ItemResult<unknown>
  readonly effect: ItemEffect | undefined
  readonly etaMs: number | undefined
}

export interface RunOptions {
  readonly overrides: Processor.Overrides
  /** Cancels or drains the run (a drain leaves the unstarted items without a result). */
  readonly control: RunControl.RunControl
  readonly onFinished: (finished: Finished) => Effect.Effect<void>
  readonly onInFlight: (n: number) => void
  /** Admits every attempt besides the upstream budgets; told of items that need no permit any more. */
  readonly admission: RunAdmission
  /** The run at the upstream budgets: its turn, and what a drain stops. */
  readonly tenant: Budget.Tenant
}

/** How a kind's items run. */
export interface JobKindRunner {
  /** The processor's name (a span attribute). */
  readonly processor: string
  readonly run: (inputs: ReadonlyArray<unknown>, jobId: string, options: RunOptions) => Effect.Effect<void>
  /** The processor's concurrency: a job's limit unless its options set one. */
  readonly maxConcurrent: Effect.Effect<number>
}

const kindRunner = <I, A>(
  processor: Processor.Processor<I, A>,
  input: Schema.Schema<I, I>,
  effectOf: (item: I, result: ItemResult<A>, jobId: string) => ItemEffect | undefined
): JobKindRunner => ({
  processor: processor.name,
  maxConcurrent: processor.maxConcurrent.get,
  run: (inputs, jobId, options) =>
    Effect.gen(function* () {
      // Inputs were validated when the job was accepted; decoding again guards against a hand-edited row.
      const decoded = yield* Effect.orDie(Schema.decodeUnknown(Schema.Array(input))(inputs))
      const { admission } = options
      let unfinished = decoded.length
      const overrides = { ...options.overrides, tenant: options.tenant, budget: admission.budget }
      yield* processor
        .run(decoded, overrides, {
          control: options.control,
          runId: jobId,
          onEvent: (event) => {
            options.onInFlight(event.counts.inFlight)
            if (event._tag !== "ItemFinished") return Effect.void
            unfinished--
            admission.done(1)
            const item = decoded[event.result.index]
            return options.onFinished({
              result: event.result,
              effect: item === undefined ? undefined : effectOf(item, event.result, jobId),
              etaMs: event.etaMs
            })
          }
        })
        .pipe(Effect.ensuring(Effect.sync(() => admission.done(unfinished))))
    })
})

/** The kinds, each on its processor. */
export const make: Effect.Effect<
  Record<JobKind, JobKindRunner>,
  never,
  InteractionsProcessor | PostGenerationProcessor | IntradayTriggersProcessor
> = Effect.gen(function* () {
  const interactions = yield* InteractionsProcessor
  const postGeneration = yield* PostGenerationProcessor
  const intraday = yield* IntradayTriggersProcessor
  return {
    interactions: kindRunner(interactions, kindSchemas.interactions.input, (post, result) =>
      result.status === "succeeded"
        ? { _tag: "Interactions", postId: post.postId, articleId: post.articleId, kolSerial: post.kolSerial, data: result.value }
        : undefined
    ),
    "post-generation": kindRunner(postGeneration, kindSchemas["post-generation"].input, (request, result, jobId) =>
      result.status === "succeeded"
        ? {
            _tag: "GeneratedPost",
            postId: request.id ?? `${jobId}-${result.index}`,
            kolSerial: request.kolSerial,
            stockCode: request.stockCode,
            content: result.value.content
          }
        : undefined
    ),
    "intraday-triggers": kindRunner(intraday, kindSchemas["intraday-triggers"].input, () => undefined)
  }
})
