/**
 * Live job events inside one process, routed by job id: a follower of a job receives that job's
 * events and nothing else. One shared hub that every follower filtered made each event cost one
 * delivery per follower: 150 sync batches of 20 items were ~1M deliveries, ~40 ms of CPU per item,
 * and starved the event loop (`/health` answered in seconds). Publishing to a job nobody follows
 * costs one map lookup.
 */
import { Effect, PubSub, type Queue, type Scope } from "effect"
import type { JobEvent } from "./Model.js"

export interface JobEvents {
  readonly publish: (event: JobEvent) => Effect.Effect<void>
  /** The job's events from now on, until the scope closes. */
  readonly subscribe: (jobId: string) => Effect.Effect<Queue.Dequeue<JobEvent>, never, Scope.Scope>
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

export const make: Effect.Effect<JobEvents> = Effect.sync(() => {
  const topics = new Map<string, Topic>()

  const publish = (event: JobEvent) =>
    Effect.suspend(() => {
      const topic = topics.get(event.jobId)
      return topic === undefined ? Effect.void : PubSub.publish(topic.hub, event)
    })

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

  return {
    publish,
    subscribe,
    followed: () => topics.size,
    isFollowed: (jobId: string) => topics.has(jobId),
    followedJobs: () => Array.from(topics.keys())
  }
})
