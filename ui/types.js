// @ts-check
/**
 * The API's shapes as the page reads them (JSDoc types only, no code): mirrors src/domain/Job.ts,
 * JobEvent.ts, ItemResult.ts, JobQueries.ts and Operations.ts, plus the two dashboard routes.
 */

/** @typedef {"interactions" | "post-generation" | "intraday-triggers"} JobKind */
/** @typedef {"pending" | "running" | "completed" | "cancelled"} JobStatus */
/** @typedef {"high" | "normal" | "low"} Priority */

/**
 * @typedef {object} Counts
 * @property {number} total
 * @property {number} completed
 * @property {number} succeeded
 * @property {number} failed
 * @property {number} cancelled
 * @property {number} skipped
 */

/**
 * @typedef {object} JobOptions
 * @property {number} [maxConcurrent]
 * @property {number} [timeoutSeconds]
 * @property {Priority} [priority]
 * @property {number} [deadlineSeconds]
 */

/**
 * @typedef {Counts & {
 *   id: string, kind: JobKind, status: JobStatus, success: boolean, options: JobOptions,
 *   idempotencyKey?: string, createdAt: string, startedAt?: string, finishedAt?: string, durationMs?: number
 * }} Job
 */

/**
 * @typedef {object} ItemError
 * @property {string} type
 * @property {string} message
 * @property {boolean} retryable
 * @property {number} [retryAfterMs]
 */

/**
 * @typedef {{ index: number, id?: string, attempts: number, durationMs: number } & (
 *   { status: "succeeded", value: unknown } | { status: "failed" | "cancelled" | "skipped", error: ItemError }
 * )} ItemResult
 */

/** @typedef {Job & { results: ItemResult[], moreResults?: string }} JobWithResults */

/**
 * @typedef {object} ResultsPage
 * @property {string} jobId
 * @property {JobStatus} status
 * @property {number} total
 * @property {number} completed
 * @property {ItemResult[]} results
 * @property {number} [next]
 */

/**
 * @typedef {object} JobPage
 * @property {Job[]} jobs
 * @property {number} total
 * @property {number} limit
 * @property {string} [next]
 */

/**
 * @typedef {{ type: "started", jobId: string, kind: JobKind, total: number, at: string }
 *   | { type: "item", jobId: string, seq: number, result: ItemResult }
 *   | (Counts & { type: "progress", jobId: string, inFlight: number, etaMs?: number })
 *   | { type: "completed", jobId: string, job: Job }} JobEvent
 */

/**
 * @typedef {object} Upstream
 * @property {string} key
 * @property {number} ceiling
 * @property {number} [share]
 * @property {number} limit
 * @property {number} inFlight
 * @property {number} waitingItems
 * @property {number} waitingJobs
 * @property {string} [cooldownUntil]
 * @property {string} [rate]
 * @property {string} algorithm
 * @property {boolean} adaptive
 * @property {number} throttled
 * @property {number} cooldowns
 */

/**
 * @typedef {object} Breaker
 * @property {string} key
 * @property {"closed" | "open" | "half_open"} status
 * @property {string} since
 * @property {number} [retryAfterMs]
 * @property {number} probesInFlight
 */

/**
 * @typedef {object} Processor
 * @property {string} name
 * @property {number} maxConcurrent
 * @property {number} timeoutSeconds
 */

/**
 * @typedef {object} Instance
 * @property {string} id
 * @property {string} [address]
 * @property {boolean} alive
 * @property {boolean} self
 * @property {string} [startedAt]
 * @property {string} [lastSeen]
 */

/**
 * @typedef {object} UpstreamSample
 * @property {string} key
 * @property {number} limit
 * @property {number} ceiling
 * @property {number} inFlight
 * @property {number} waiting
 * @property {number} throttled
 */

/**
 * @typedef {object} UpstreamHistory
 * @property {number} intervalMs
 * @property {{ at: string, upstreams: UpstreamSample[] }[]} samples
 */

/**
 * The service's error body (src/http/api/Errors.ts): `{ _tag, message, issues? }`, each issue naming
 * the field path it is about.
 * @typedef {object} ErrorBody
 * @property {string} _tag
 * @property {string} message
 * @property {{ path: string, message: string }[]} [issues]
 */

export {}
