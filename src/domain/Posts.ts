/** Tracked posts: importing published articles, and a post with the interactions fetched for it. */
import { Schema } from "effect"
import { TrackedPostInput } from "./Batches.js"
import { Interactions } from "./Kinds.js"
import { batch, strict } from "./Wire.js"

export const ImportPostsBody = Schema.Struct({
  posts: batch(TrackedPostInput).pipe(Schema.minItems(1))
}).annotations({ identifier: "ImportPosts", ...strict })

const WithFetchedAt = Schema.Struct({ ...Interactions.fields, fetchedAt: Schema.String })

export const TrackedPostView = Schema.Struct({
  postId: Schema.String,
  articleId: Schema.optionalWith(Schema.String, { exact: true }),
  kolSerial: Schema.String,
  stockCode: Schema.optionalWith(Schema.String, { exact: true }),
  content: Schema.optionalWith(Schema.String, { exact: true }),
  source: Schema.Literal("imported", "generated"),
  jobId: Schema.optionalWith(Schema.String, { exact: true }),
  createdAt: Schema.String,
  updatedAt: Schema.String,
  interactions: Schema.optionalWith(WithFetchedAt, { exact: true }),
  history: Schema.Array(Schema.Struct({ ...WithFetchedAt.fields, jobId: Schema.String }))
}).annotations({ identifier: "TrackedPost" })
export type TrackedPostView = typeof TrackedPostView.Type
