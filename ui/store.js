// @ts-check
/** A tiny observable value shared across the page (connection status, "the API wants a key"). */
import { useEffect, useState } from "preact/hooks"

/**
 * @template T
 * @typedef {object} Store
 * @property {() => T} get
 * @property {(value: T) => void} set
 * @property {(listener: (value: T) => void) => () => void} subscribe
 */

/**
 * @template T
 * @param {T} initial
 * @returns {Store<T>}
 */
export const createStore = (initial) => {
  let value = initial
  /** @type {Set<(value: T) => void>} */
  const listeners = new Set()
  return {
    get: () => value,
    set: (next) => {
      if (Object.is(next, value)) return
      value = next
      for (const listener of listeners) listener(value)
    },
    subscribe: (listener) => {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    }
  }
}

/**
 * The store's current value, re-rendering the component when it changes.
 * @template T
 * @param {Store<T>} store
 * @returns {T}
 */
export const useStore = (store) => {
  const [value, setValue] = useState(store.get)
  useEffect(() => {
    setValue(store.get())
    return store.subscribe((next) => setValue(() => next))
  }, [store])
  return value
}
