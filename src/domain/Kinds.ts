/**
 * The three kinds of work a job can hold, as data: each kind's input item and the value a finished
 * item carries. The processors run them, the contract accepts and returns them, the store keeps them.
 */
import { Schema } from "effect"

const text = (max: number) => Schema.String.pipe(Schema.maxLength(max))
/** A forum account's serial (digits on the real forum). */
const KolSerial = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_]{1,40}$/))

// ---- interactions --------------------------------------------------------------------------------

/** A published article whose interactions are fetched. */
export const TrackedPost = Schema.Struct({
  postId: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  articleId: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  kolSerial: KolSerial
})
export type TrackedPost = typeof TrackedPost.Type

/** An article's interaction counts, as the forum reports them. */
export const Interactions = Schema.Struct({
  views: Schema.Number,
  likes: Schema.Number,
  comments: Schema.Number,
  shares: Schema.Number,
  engagementRate: Schema.optionalWith(Schema.Number, { exact: true })
})
export type Interactions = typeof Interactions.Type

// ---- post generation -----------------------------------------------------------------------------

export const PostRequest = Schema.Struct({
  id: Schema.optionalWith(text(200), { exact: true }),
  kolSerial: KolSerial,
  stockCode: Schema.String.pipe(Schema.pattern(/^[0-9A-Za-z.]{1,12}$/)),
  stockName: Schema.optionalWith(text(100), { exact: true }),
  trigger: Schema.optionalWith(text(200), { exact: true }),
  persona: Schema.optionalWith(text(2_000), { exact: true }),
  prompt: Schema.optionalWith(text(8_000), { exact: true })
})
export type PostRequest = typeof PostRequest.Type

export const GeneratedPost = Schema.Struct({
  content: Schema.String,
  model: Schema.String,
  usage: Schema.NullOr(
    Schema.Struct({ promptTokens: Schema.Number, completionTokens: Schema.Number, totalTokens: Schema.Number })
  )
})
export type GeneratedPost = typeof GeneratedPost.Type

// ---- intraday triggers ---------------------------------------------------------------------------

export const TriggerConfig = Schema.Struct({
  triggerKey: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/)),
  limit: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 50)), { exact: true }),
  newsKeywords: Schema.optionalWith(
    Schema.Array(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(50))).pipe(Schema.maxItems(10)),
    { exact: true }
  ),
  params: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { exact: true })
})
export type TriggerConfig = typeof TriggerConfig.Type

/** One stock of a market screen. */
export const ScreenedStock = Schema.Struct({
  code: Schema.String,
  name: Schema.String,
  price: Schema.optionalWith(Schema.Number, { exact: true }),
  changePercent: Schema.optionalWith(Schema.Number, { exact: true }),
  volume: Schema.optionalWith(Schema.Number, { exact: true })
})
export type ScreenedStock = typeof ScreenedStock.Type

/** One news search hit. */
export const NewsItem = Schema.Struct({
  title: Schema.String,
  link: Schema.String,
  snippet: Schema.optionalWith(Schema.String, { exact: true }),
  date: Schema.optionalWith(Schema.String, { exact: true }),
  source: Schema.optionalWith(Schema.String, { exact: true })
})
export type NewsItem = typeof NewsItem.Type

export const TriggerResult = Schema.Struct({
  triggerKey: Schema.String,
  stocks: Schema.Array(ScreenedStock),
  news: Schema.Array(NewsItem)
})
export type TriggerResult = typeof TriggerResult.Type

// ---- the kinds -----------------------------------------------------------------------------------

export const jobKinds = ["interactions", "post-generation", "intraday-triggers"] as const
export const JobKind = Schema.Literal(...jobKinds)
export type JobKind = typeof JobKind.Type

/** Input and result-value schemas of each kind. */
export const kindSchemas = {
  interactions: { input: TrackedPost, value: Interactions },
  "post-generation": { input: PostRequest, value: GeneratedPost },
  "intraday-triggers": { input: TriggerConfig, value: TriggerResult }
} as const
