/**
 * Live job events inside one process, routed by job id: a follower of a job receives that job's
 * events and nothing else. One shared hub that every follower filtered made each event cost one
 * delivery per follower: 150 sync batches of 20 items were ~1M deliveries, ~40 ms of CPU per item,
 * and starved the event loop (`/health` answered in seconds). Publishing to a job nobody follows
 * costs one map lookup. A sync batch only waits for its job's end (`awaitCompleted`): a waiter is not
 * a subscriber, so the job's two events per item are not built, published and filtered out for it
 * (measured in `bench:http` H2: see the README's cost ledger).
 *
 * The refcounted maps are ours rather than Effect's `RcMap`: its only way to a live entry is `get`,
 * which takes a reference in a scope, so each publish would open and close one (13 µs per event
 * against 0.5 µs for `Map.get` + `PubSub.publish`, two events per followed item;
 * `scripts/events-lookup.ts`, 200k publishes, effect 3.22), and `isSubscribed` must answer synchronously.
 */
import { Deferred, Effect, PubSub, type Queue, type Scope } from "effect"
import type { JobEvent } from "./Model.js"

export interface JobEvents {
  readonly publish: (event: JobEvent) => Effect.Effect<void>
  /** The job's events from now on, until the scope closes. */
  readonly subscribe: (jobId: string) => Effect.Effect<Queue.Dequeue<JobEvent>, never, Scope.Scope>
  /**
   * Waits, until the scope closes, for the job's `completed` event: the effect returned completes
   * when it is published (from the moment this is called; a job that has ended already is the
   * caller's to check, after calling). Counts as following the job meanwhile.
   */
  readonly awaitCompleted: (jobId: string) => Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
  /** Whether the job has a subscriber for its item and progress events (else they need not be built). */
  readonly isSubscribed: (jobId: string) => boolean
  /** Jobs with at least one follower (for tests and metrics). */
  readonly followed: () => number
  /** Whether `jobId` has a follower in this process now (retention never deletes such a job). */
  readonly isFollowed: (jobId: string) => boolean
  /** The jobs followed in this process now. */
  readonly followedJobs: () => ReadonlyArray<string>
}

interface Topic {
  readonly hub: PubSub.PubSub<JobEvent>
  followers: number
}

interface Waiting {
  readonly completed: Deferred.Deferred<void>
  waiters: number
}

export const make: Effect.Effect<JobEvents> = Effect.sync(() => {
  const topics = new Map<string, Topic>()
  const waiting = new Map<string, Waiting>()

  const publish = (event: JobEvent) =>
    Effect.suspend(() => {
      const topic = topics.get(event.jobId)
      const published = topic === undefined ? Effect.void : PubSub.publish(topic.hub, event)
      const waited = event.type === "completed" ? waiting.get(event.jobId) : undefined
      return waited === undefined ? Effect.asVoid(published) : Effect.zipRight(published, Deferred.succeed(waited.completed, undefined))
    })

  const awaitCompleted = (jobId: string) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const existing = waiting.get(jobId)
        if (existing !== undefined) {
          existing.waiters++
          return Effect.succeed(existing)
        }
        return Effect.map(Deferred.make<void>(), (completed) => {
          const entry: Waiting = { completed, waiters: 1 }
          waiting.set(jobId, entry)
          return entry
        })
      }),
      (entry) =>
        Effect.sync(() => {
          entry.waiters--
          if (entry.waiters === 0 && waiting.get(jobId) === entry) waiting.delete(jobId)
        })
    ).pipe(Effect.map((entry) => Deferred.await(entry.completed)))

  const acquire = (jobId: string) =>
    Effect.suspend(() => {
      const existing = topics.get(jobId)
      if (existing !== undefined) {
        existing.followers++
        return Effect.succeed(existing)
      }
      return Effect.map(PubSub.unbounded<JobEvent>(), (hub) => {
        // Another follower may have registered while the hub was made (it is synchronous, but keep the map the truth).
        const raced = topics.get(jobId)
        if (raced !== undefined) {
          raced.followers++
          return raced
        }
        const topic: Topic = { hub, followers: 1 }
        topics.set(jobId, topic)
        return topic
      })
    })

  const release = (jobId: string, topic: Topic) =>
    Effect.suspend(() => {
      topic.followers--
      if (topic.followers > 0 || topics.get(jobId) !== topic) return Effect.void
      topics.delete(jobId)
      return PubSub.shutdown(topic.hub)
    })

  const subscribe = (jobId: string) =>
    Effect.acquireRelease(acquire(jobId), (topic) => release(jobId, topic)).pipe(
      Effect.flatMap((topic) => PubSub.subscribe(topic.hub))
    )

  const followedJobs = () => Array.from(new Set([...topics.keys(), ...waiting.keys()]))

  return {
    publish,
    subscribe,
    awaitCompleted,
    isSubscribed: (jobId: string) => topics.has(jobId),
    followed: () => followedJobs().length,
    isFollowed: (jobId: string) => topics.has(jobId) || waiting.has(jobId),
    followedJobs
  }
})
