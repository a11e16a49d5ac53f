/** Tracked posts: import published articles, read one with its fetched interactions. */
import { HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Schema } from "effect"
import { ImportPostsBody, TrackedPostView } from "../../domain/Posts.js"
import { Authorization, BadRequest, NotFound, RequestGuard } from "./Errors.js"

export class PostsGroup extends HttpApiGroup.make("posts")
  .add(
    HttpApiEndpoint.post("import", "/api/posts")
      .setPayload(ImportPostsBody)
      .addSuccess(Schema.Struct({ imported: Schema.Number }))
  )
  .add(
    HttpApiEndpoint.get("get", "/api/posts/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(TrackedPostView)
      .addError(NotFound)
  )
  .addError(BadRequest)
  .middleware(RequestGuard)
  .middleware(Authorization) {}
