/** The tracked-posts routes: import published articles, read one with its fetched interactions. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { JobStore } from "../../jobs/JobStore.js"
import { Api, NotFound } from "../Api.js"
import { storeUnavailable } from "./DomainErrors.js"

export const PostsLive = HttpApiBuilder.group(Api, "posts", (handlers) =>
  Effect.gen(function* () {
    const store = yield* JobStore
    return handlers
      .handle("import", ({ payload }) =>
        store.importPosts(payload.posts, Date.now()).pipe(
          Effect.as({ imported: payload.posts.length }),
          Effect.catchTag("StoreError", storeUnavailable)
        )
      )
      .handle("get", ({ path }) =>
        store.getPost(path.id).pipe(
          Effect.catchTag("StoreError", storeUnavailable),
          Effect.flatMap((post) =>
            post === undefined
              ? Effect.fail(new NotFound({ message: `no tracked post with id "${path.id}"` }))
              : Effect.succeed({
                  postId: post.postId,
                  kolSerial: post.kolSerial,
                  source: post.source,
                  createdAt: post.createdAt,
                  updatedAt: post.updatedAt,
                  history: post.history,
                  ...(post.articleId === undefined ? {} : { articleId: post.articleId }),
                  ...(post.stockCode === undefined ? {} : { stockCode: post.stockCode }),
                  ...(post.content === undefined ? {} : { content: post.content }),
                  ...(post.jobId === undefined ? {} : { jobId: post.jobId }),
                  ...(post.interactions === undefined ? {} : { interactions: post.interactions })
                })
          )
        )
      )
  })
)
