// @ts-check
/** Timers the pages share: polling that never piles up requests, and a ticking clock. */
import { useEffect, useRef, useState } from "preact/hooks"

/**
 * Calls `load` now and again `intervalMs` after each call has finished (so a slow service is never
 * sent a second request before it answered the first), paused while the tab is hidden, stopped on
 * unmount; the signal aborts the call in flight then. Restarts when `deps` change.
 * @param {(signal: AbortSignal) => Promise<unknown>} load
 * @param {number} intervalMs
 * @param {ReadonlyArray<unknown>} deps
 */
export const usePoll = (load, intervalMs, deps) => {
  const latest = useRef(load)
  latest.current = load
  useEffect(() => {
    const controller = new AbortController()
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer
    let running = false
    const tick = async () => {
      timer = undefined
      if (document.hidden) return // resumed by visibilitychange
      running = true
      try {
        await latest.current(controller.signal)
      } finally {
        running = false
      }
      if (!controller.signal.aborted) timer = setTimeout(tick, intervalMs)
    }
    const onVisibility = () => {
      if (!document.hidden && timer === undefined && !running) void tick()
    }
    document.addEventListener("visibilitychange", onVisibility)
    void tick()
    return () => {
      controller.abort()
      if (timer !== undefined) clearTimeout(timer)
      document.removeEventListener("visibilitychange", onVisibility)
    }
  }, [intervalMs, ...deps])
}

/**
 * The current time in ms, updated every `intervalMs` while `active` (countdowns).
 * @param {number} intervalMs
 * @param {boolean} [active]
 */
export const useNow = (intervalMs, active = true) => {
  const [now, setNow] = useState(Date.now)
  useEffect(() => {
    if (!active) return
    setNow(Date.now())
    const timer = setInterval(() => setNow(Date.now()), intervalMs)
    return () => clearInterval(timer)
  }, [intervalMs, active])
  return now
}
