/**
 * The cluster's stored messages as retention sees them (`cluster_messages`, `cluster_replies`, the
 * tables `@effect/cluster`'s `SqlMessageStorage` writes for every workflow, activity and reply): which
 * workflow executions have finished long enough ago, and deleting them. A workflow execution is an
 * entity; its messages go together, and only once each request has its final reply (the message is
 * `processed`), its newest message is older than the cutoff, and (a job's part) the workflow that
 * started it has finished too.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { column, Int, onceSucceeded, orStoreError } from "./Sql.js"

/** `@effect/cluster`'s Snowflake ids count milliseconds from this moment in their top 42 bits. */
const SNOWFLAKE_EPOCH_MS = Date.UTC(2025, 0, 1)

/** The smallest cluster message id made at `ms` or later: messages with a smaller id are older. */
export const snowflakeAt = (ms: number): bigint => BigInt(Math.max(0, Math.floor(ms) - SNOWFLAKE_EPOCH_MS)) << 22n

/** Message ids are 64-bit: read as text (a JavaScript number would round them). */
const MessageIdRow = Schema.Struct({
  id: Schema.String.pipe(Schema.pattern(/^\d+$/)),
  entityType: column(Schema.String, "entity_type"),
  entityId: column(Schema.String, "entity_id")
})
const EntityRow = Schema.Struct({
  entityType: column(Schema.String, "entity_type"),
  entityId: column(Schema.String, "entity_id"),
  runPayload: column(Schema.NullOr(Schema.String), "run_payload"),
  done: Int
})
const UnfinishedRow = Schema.Struct({ entityType: column(Schema.String, "entity_type"), entityId: column(Schema.String, "entity_id") })

/** The part of a workflow's `run` payload that names the workflow that started it (`@effect/workflow`'s child executions). */
const RunPayload = Schema.parseJson(
  Schema.Struct({
    "~@effect/workflow/parent": Schema.optional(Schema.Struct({ workflowName: Schema.String, executionId: Schema.String }))
  })
)
const decodeRunPayload = Schema.decodeUnknownOption(RunPayload)

/** One cluster entity (a workflow execution): its messages are deleted together. */
export interface Entity {
  readonly entityType: string
  readonly entityId: string
}

const entityKey = (e: Entity) => `${e.entityType}\u0000${e.entityId}`

const rows = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknown(Schema.Array(schema))

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  /**
   * The cluster's tables are created by `@effect/cluster` after our migrations run (on a new
   * database), so the index retention looks entities up by is made here, once per process, before
   * the first cluster sweep: without it every lookup below read the whole table. PostgreSQL builds
   * it without blocking the cluster's writes (CONCURRENTLY, outside a transaction).
   */
  const ensureEntityIndex = onceSucceeded(
    sql.onDialectOrElse({
      pg: () => sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS pp_cluster_messages_entity ON cluster_messages (entity_id)`,
      orElse: () => sql`CREATE INDEX IF NOT EXISTS pp_cluster_messages_entity ON cluster_messages (entity_id)`
    })
  ).pipe(orStoreError("indexing the cluster's messages"))

  /**
   * The entities (workflow executions) of the oldest messages older than `before` and after message
   * `after`, reading at most `limit` messages in id order (the primary key: ids grow with time), with
   * what decides whether they may go: whether every message is processed (each request has its
   * final reply), whether the newest is older than `before`, and the payload of the `run` request,
   * which names a parent workflow, if any.
   */
  const entitiesOfOldMessages = (before: bigint, after: Option.Option<string>, limit: number) =>
    Effect.gen(function* () {
      const oldest = yield* sql`SELECT CAST(id AS TEXT) AS id, entity_type, entity_id FROM cluster_messages
        WHERE id < ${sql.literal(before.toString())}
        ${Option.match(after, { onNone: () => sql``, onSome: (id) => sql`AND id > ${sql.literal(id)}` })}
        ORDER BY id LIMIT ${limit}`.pipe(Effect.flatMap(rows(MessageIdRow)))
      const last = oldest[oldest.length - 1]
      const next = oldest.length < limit || last === undefined ? Option.none<string>() : Option.some(last.id)
      if (oldest.length === 0) return { entities: [], next }
      const entities = yield* sql`SELECT entity_type, entity_id,
          MAX(CASE WHEN kind = 0 AND tag = 'run' THEN payload END) AS run_payload,
          CASE WHEN MAX(id) < ${sql.literal(before.toString())} AND MIN(CASE WHEN processed THEN 1 ELSE 0 END) = 1 THEN 1 ELSE 0 END AS done
        FROM cluster_messages WHERE entity_id IN ${sql.in([...new Set(oldest.map((m) => m.entityId))])}
        GROUP BY entity_type, entity_id`.pipe(Effect.flatMap(rows(EntityRow)))
      return { entities, next }
    })

  /** Of these entities, those with a message not yet processed (a workflow still running). */
  const unfinishedOf = (entities: ReadonlyArray<Entity>) =>
    entities.length === 0
      ? Effect.succeed(new Set<string>())
      : sql`SELECT DISTINCT entity_type, entity_id FROM cluster_messages
          WHERE entity_id IN ${sql.in(entities.map((e) => e.entityId))} AND NOT processed`.pipe(
          Effect.flatMap(rows(UnfinishedRow)),
          Effect.map((found) => new Set(found.map(entityKey)))
        )

  const parentOf = (runPayload: string | null): Option.Option<Entity> =>
    Option.fromNullable(runPayload).pipe(
      Option.flatMap(decodeRunPayload),
      Option.flatMap((payload) => Option.fromNullable(payload["~@effect/workflow/parent"])),
      Option.map((parent) => ({ entityType: `Workflow/${parent.workflowName}`, entityId: parent.executionId }))
    )

  /**
   * One page of cluster entities that may go (`next`: where the following page starts): finished
   * and older than `before`, and a child workflow (a job's part) only once its parent has finished
   * too, since a parent that runs again replays its children from their stored replies, and a child
   * whose messages are gone would run again.
   */
  const expiredEntities = (before: bigint, after: Option.Option<string>, limit: number) =>
    Effect.gen(function* () {
      yield* ensureEntityIndex
      const { entities, next } = yield* entitiesOfOldMessages(before, after, limit)
      const finished = entities.filter((e) => e.done === 1)
      const running = yield* unfinishedOf(finished.flatMap((e) => Option.toArray(parentOf(e.runPayload))))
      const expired = finished.filter((e) =>
        Option.match(parentOf(e.runPayload), { onNone: () => true, onSome: (parent) => !running.has(entityKey(parent)) })
      )
      return { expired: expired.map((e): Entity => ({ entityType: e.entityType, entityId: e.entityId })), next }
    }).pipe(orStoreError("listing finished workflows"))

  /** Deletes the entities' messages and replies in one transaction; how many of each. */
  const dropEntities = (entities: ReadonlyArray<Entity>) =>
    (entities.length === 0
      ? Effect.succeed({ messages: 0, replies: 0 })
      : Effect.gen(function* () {
          const keys = new Set(entities.map(entityKey))
          const found = yield* sql`SELECT CAST(id AS TEXT) AS id, entity_type, entity_id FROM cluster_messages
            WHERE entity_id IN ${sql.in(entities.map((e) => e.entityId))}`.pipe(Effect.flatMap(rows(MessageIdRow)))
          const mine = found.filter((m) => keys.has(entityKey(m)))
          if (mine.length === 0) return { messages: 0, replies: 0 }
          // The ids are checked digits (MessageIdRow): written as literals, compared as the 64-bit integers they are.
          const ids = sql.literal(mine.map((m) => m.id).join(","))
          const replies = yield* sql`DELETE FROM cluster_replies WHERE request_id IN (${ids}) RETURNING kind`
          const messages = yield* sql`DELETE FROM cluster_messages WHERE id IN (${ids}) RETURNING kind`
          return { messages: messages.length, replies: replies.length }
        }).pipe(sql.withTransaction)
    ).pipe(orStoreError("deleting finished workflows' messages"))

  return { expiredEntities, dropEntities } as const
})
