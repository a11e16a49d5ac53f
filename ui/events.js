// @ts-check
/**
 * Following a job's progress: `GET /api/jobs/:id/events` read with fetch and a streamed NDJSON body
 * (EventSource cannot send the API key). A dropped stream is reopened with backoff, sending
 * `Last-Event-ID` = the last item `seq` seen, and item events at or below it are dropped, so a
 * reconnect never delivers an item twice.
 */
import { authHeaders, connection, keyRequired } from "./api.js"

/** @typedef {import("./types.js").JobEvent} JobEvent */

/**
 * @typedef {object} FollowOptions
 * @property {number} [afterSeq] item events up to this seq are already known (not replayed)
 * @property {(event: JobEvent) => void} onEvent
 * @property {(message: string) => void} [onError] the stream cannot be followed (unknown job)
 */

/** Backoff between reconnects: 0.5 s doubling to 8 s, with jitter so many tabs do not align. */
const backoffMs = (/** @type {number} */ attempt) => Math.min(8_000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5)

/**
 * Waits before the next reconnect; cut short when the browser comes back online or the page is left.
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      removeEventListener("online", done)
      signal.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    addEventListener("online", done)
    signal.addEventListener("abort", done)
  })

/**
 * @param {string} line
 * @returns {JobEvent | undefined}
 */
const parseEvent = (line) => {
  try {
    /** @type {unknown} */
    const value = JSON.parse(line)
    return typeof value === "object" && value !== null && "type" in value && typeof value.type === "string"
      ? /** @type {JobEvent} */ (value)
      : undefined
  } catch {
    return undefined
  }
}

/**
 * Follows the job's events until it completes or `close()` is called (leaving the page).
 * @param {string} jobId
 * @param {FollowOptions} options
 * @returns {{ close: () => void }}
 */
export const followJobEvents = (jobId, options) => {
  const controller = new AbortController()
  const { signal } = controller
  let lastSeq = options.afterSeq
  let ended = false

  /** Reads one connection's body; true when the job's `completed` event arrived. */
  const readStream = async (/** @type {ReadableStream<Uint8Array>} */ body) => {
    const reader = body.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let newline = buffer.indexOf("\n")
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim()
        buffer = buffer.slice(newline + 1)
        newline = buffer.indexOf("\n")
        const event = line === "" ? undefined : parseEvent(line)
        if (event === undefined) continue
        if (event.type === "item") {
          if (lastSeq !== undefined && event.seq <= lastSeq) continue
          lastSeq = event.seq
        }
        if (signal.aborted) return false
        options.onEvent(event)
        if (event.type === "completed") return true
      }
    }
    return false
  }

  const run = async () => {
    let attempt = 0
    while (!signal.aborted && !ended) {
      // One controller per connection: leaving the page aborts it, and so does the browser going
      // offline — the service sends no keep-alives, so a connection cut silently would hang forever.
      const current = new AbortController()
      const abortCurrent = () => current.abort()
      signal.addEventListener("abort", abortCurrent)
      addEventListener("offline", abortCurrent)
      try {
        const headers = authHeaders({ accept: "application/x-ndjson" })
        if (lastSeq !== undefined) headers["last-event-id"] = String(lastSeq)
        const response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal: current.signal, cache: "no-store" })
        if (response.status === 401) {
          keyRequired.set(true)
          // Wait for a key instead of hammering: the prompt's answer clears the flag.
          await new Promise((resolve) => {
            const unsubscribe = keyRequired.subscribe((required) => {
              if (!required) { unsubscribe(); resolve(undefined) }
            })
            signal.addEventListener("abort", () => { unsubscribe(); resolve(undefined) }, { once: true })
          })
          continue
        }
        if (response.status === 404) {
          options.onError?.("This job does not exist (any more).")
          return
        }
        if (!response.ok || response.body === null) throw new Error(`events: ${response.status}`)
        connection.set("live")
        attempt = 0
        ended = await readStream(response.body)
      } catch {
        // A dropped connection or a failed request: reconnect below (unless we are leaving).
      } finally {
        signal.removeEventListener("abort", abortCurrent)
        removeEventListener("offline", abortCurrent)
      }
      if (signal.aborted || ended) return
      const offline = !navigator.onLine
      connection.set(offline ? "offline" : "reconnecting")
      // Offline: wait for the browser to come back (the `online` event ends the wait), checking now and then.
      await sleep(offline ? 30_000 : backoffMs(attempt), signal)
      if (!offline) attempt = Math.min(attempt + 1, 10)
    }
  }

  void run()
  return { close: () => controller.abort() }
}
