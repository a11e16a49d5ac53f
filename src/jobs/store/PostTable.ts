/**
 * Tracked posts: the posts an interactions job reads (imported, or written by a post-generation job),
 * with their latest interaction counts and one history row per job that fetched them. Written in the
 * item writer's transaction (`recordEffects`), so a post's counts change exactly when the item that
 * fetched them is stored, and never twice for one item. A post's history is bounded: reads return its
 * newest `POST_HISTORY_LIMIT` rows, and retention (`Retention.ts`) deletes the older ones.
 */
import { SqlClient, SqlSchema } from "@effect/sql"
import { Config, Effect, Schema } from "effect"
import { Interactions } from "../../upstream/Forum.js"
import { column, IsoFromMillis, Nullable, orStoreError } from "./Sql.js"

/** What finishing an item changes besides its own row. */
export type ItemEffect =
  | { readonly _tag: "Interactions"; readonly postId: string; readonly articleId: string; readonly kolSerial: string; readonly data: Interactions }
  | {
      readonly _tag: "GeneratedPost"
      readonly postId: string
      readonly kolSerial: string
      readonly stockCode: string
      readonly content: string
    }

export interface TrackedPostRecord {
  readonly postId: string
  readonly articleId: string | undefined
  readonly kolSerial: string
  readonly stockCode: string | undefined
  readonly content: string | undefined
  readonly source: "imported" | "generated"
  readonly jobId: string | undefined
  readonly createdAt: string
  readonly updatedAt: string
  readonly interactions: (Interactions & { readonly fetchedAt: string }) | undefined
  readonly history: ReadonlyArray<Interactions & { readonly fetchedAt: string; readonly jobId: string }>
}

const PostRow = Schema.Struct({
  postId: column(Schema.String, "post_id"),
  articleId: column(Nullable(Schema.String), "article_id"),
  kolSerial: column(Schema.String, "kol_serial"),
  stockCode: column(Nullable(Schema.String), "stock_code"),
  content: Nullable(Schema.String),
  source: Schema.Literal("imported", "generated"),
  jobId: column(Nullable(Schema.String), "job_id"),
  createdAt: column(IsoFromMillis, "created_at"),
  updatedAt: column(IsoFromMillis, "updated_at"),
  interactions: Nullable(Schema.parseJson(Interactions)),
  interactionsAt: column(Nullable(IsoFromMillis), "interactions_at")
})

const HistoryRow = Schema.Struct({
  jobId: column(Schema.String, "job_id"),
  fetchedAt: column(IsoFromMillis, "fetched_at"),
  data: Schema.parseJson(Interactions)
})

const TrackedRow = Schema.Struct({
  postId: column(Schema.String, "post_id"),
  articleId: column(Schema.String, "article_id"),
  kolSerial: column(Schema.String, "kol_serial")
})

/** History rows kept per post, newest first (default 100). */
export const historyLimit = Config.integer("POST_HISTORY_LIMIT").pipe(
  Config.validate({ message: "Expected an integer of at least 1", validation: (n) => n >= 1 }),
  Config.withDefault(100)
)

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  // A value that does not parse stops the service at start (retention reads the same setting and
  // fails its layer); the store itself only bounds what it shows.
  const keep = yield* historyLimit.pipe(Effect.orElseSucceed(() => 100))

  /**
   * Stores what fresh items changed (`effects` of items whose rows were just inserted). Runs inside
   * the caller's transaction; its failures are the caller's.
   */
  const recordEffects = (jobId: string, effects: ReadonlyArray<ItemEffect>, at: number) =>
    Effect.gen(function* () {
      const interactions = effects.flatMap((e) => (e._tag === "Interactions" ? [e] : []))
      if (interactions.length > 0) {
        yield* sql`INSERT INTO pp_posts ${sql.insert(
          interactions.map((e) => ({
            post_id: e.postId,
            article_id: e.articleId,
            kol_serial: e.kolSerial,
            source: "imported",
            interactions: JSON.stringify(e.data),
            interactions_at: at,
            created_at: at,
            updated_at: at
          }))
        )} ON CONFLICT (post_id) DO UPDATE SET interactions = excluded.interactions, interactions_at = excluded.interactions_at, updated_at = excluded.updated_at, article_id = COALESCE(pp_posts.article_id, excluded.article_id)`
        yield* sql`INSERT INTO pp_post_interactions ${sql.insert(
          interactions.map((e) => ({ post_id: e.postId, job_id: jobId, fetched_at: at, data: JSON.stringify(e.data) }))
        )} ON CONFLICT DO NOTHING`
      }
      const generated = effects.flatMap((e) => (e._tag === "GeneratedPost" ? [e] : []))
      if (generated.length > 0) {
        yield* sql`INSERT INTO pp_posts ${sql.insert(
          generated.map((e) => ({
            post_id: e.postId,
            kol_serial: e.kolSerial,
            stock_code: e.stockCode,
            content: e.content,
            source: "generated",
            job_id: jobId,
            created_at: at,
            updated_at: at
          }))
        )} ON CONFLICT (post_id) DO UPDATE SET content = excluded.content, stock_code = excluded.stock_code, job_id = excluded.job_id, updated_at = excluded.updated_at`
      }
    })

  const importPosts = (
    posts: ReadonlyArray<{ readonly postId: string; readonly articleId: string; readonly kolSerial: string }>,
    at: number
  ) =>
    (posts.length === 0
      ? Effect.void
      : sql`INSERT INTO pp_posts ${sql.insert(
          posts.map((p) => ({
            post_id: p.postId,
            article_id: p.articleId,
            kol_serial: p.kolSerial,
            source: "imported",
            created_at: at,
            updated_at: at
          }))
        )} ON CONFLICT (post_id) DO UPDATE SET article_id = excluded.article_id, kol_serial = excluded.kol_serial, updated_at = excluded.updated_at`
    ).pipe(Effect.asVoid, sql.withTransaction, orStoreError("importing posts"))

  const trackedPosts = SqlSchema.findAll({
    Request: Schema.Void,
    Result: TrackedRow,
    execute: () => sql`SELECT post_id, article_id, kol_serial FROM pp_posts WHERE article_id IS NOT NULL ORDER BY created_at, post_id`
  })(undefined).pipe(orStoreError("listing tracked posts"))

  const findPost = SqlSchema.findOne({
    Request: Schema.String,
    Result: PostRow,
    execute: (postId) => sql`SELECT post_id, article_id, kol_serial, stock_code, content, source, job_id, created_at, updated_at, interactions, interactions_at FROM pp_posts WHERE post_id = ${postId}`
  })
  const historyOf = SqlSchema.findAll({
    Request: Schema.String,
    Result: HistoryRow,
    // The newest rows, shown oldest first.
    execute: (postId) => sql`SELECT job_id, fetched_at, data FROM (
      SELECT job_id, fetched_at, data FROM pp_post_interactions WHERE post_id = ${postId} ORDER BY fetched_at DESC, job_id DESC LIMIT ${keep}
    ) AS newest ORDER BY fetched_at, job_id`
  })

  const getPost = (postId: string) =>
    Effect.gen(function* () {
      const found = yield* findPost(postId)
      if (found._tag === "None") return undefined
      const { interactions, interactionsAt, ...post } = found.value
      const history = yield* historyOf(postId)
      const record: TrackedPostRecord = {
        ...post,
        interactions: interactions === undefined || interactionsAt === undefined ? undefined : { ...interactions, fetchedAt: interactionsAt },
        history: history.map((h) => ({ ...h.data, fetchedAt: h.fetchedAt, jobId: h.jobId }))
      }
      return record
    }).pipe(orStoreError("reading a post"))

  return { recordEffects, importPosts, trackedPosts, getPost } as const
})
