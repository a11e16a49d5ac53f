// @ts-check
/**
 * Talking to the service's `/api`: every call carries the API key kept in sessionStorage, a 401
 * raises the key prompt, and failures come back as values (`{ ok: false, error }`) so no page has to
 * catch. Also keeps the connection indicator up to date.
 */
import { createStore } from "./store.js"

/** @typedef {import("./types.js").ErrorBody} ErrorBody */

/**
 * Why a call failed: the service answered with an error status (`http`, with its JSON body when it
 * sent one), or the request never got an answer (`network`).
 * @typedef {{ kind: "http", status: number, message: string, body?: ErrorBody } | { kind: "network", message: string }} ApiError
 */

/**
 * @template T
 * @typedef {{ ok: true, value: T, status: number, headers: Headers } | { ok: false, error: ApiError }} Result
 */

/** @typedef {"live" | "reconnecting" | "offline"} ConnectionStatus */

const KEY_STORAGE = "parallel-processor.apiKey"

/** What the connection indicator shows: set by every call and by the event streams. */
export const connection = createStore(/** @type {ConnectionStatus} */ ("live"))

// The browser knows first when the network is gone. Back online, one look at /health (open, tiny)
// says whether the service is reachable again, so a page that polls nothing does not stay "offline".
addEventListener("offline", () => connection.set("offline"))
addEventListener("online", () => {
  connection.set("reconnecting")
  fetch("/health", { cache: "no-store" }).then(
    (response) => connection.set(response.ok ? "live" : "reconnecting"),
    () => connection.set("offline")
  )
})

/** True while the service has answered 401 and no (new) key was entered: the app shows the prompt. */
export const keyRequired = createStore(false)

export const apiKey = () => {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? ""
  } catch {
    return "" // storage disabled: the key then lives only as long as the prompt's answer is retried
  }
}

/** @param {string} key */
export const setApiKey = (key) => {
  try {
    sessionStorage.setItem(KEY_STORAGE, key)
  } catch {
    // storage disabled: nothing to keep it in; calls go without a key and prompt again
  }
  keyRequired.set(false)
}

/**
 * The headers every `/api` call carries.
 * @param {Record<string, string>} [extra]
 * @returns {Record<string, string>}
 */
export const authHeaders = (extra = {}) => {
  const key = apiKey()
  return key === "" ? { ...extra } : { ...extra, authorization: `Bearer ${key}` }
}

/**
 * A parsed JSON body, or undefined when there is none or it is not JSON.
 * @param {Response} response
 * @returns {Promise<unknown>}
 */
const jsonBody = async (response) => {
  const text = await response.text()
  if (text === "") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * @param {unknown} body
 * @returns {body is ErrorBody}
 */
const isErrorBody = (body) =>
  typeof body === "object" && body !== null && "message" in body && typeof body.message === "string"

/**
 * @typedef {object} RequestOptions
 * @property {"GET" | "POST" | "PATCH" | "DELETE"} [method]
 * @property {unknown} [body] sent as JSON
 * @property {Record<string, string>} [headers]
 * @property {AbortSignal} [signal]
 */

/**
 * One call to the service. The value is the response's JSON as the service's contract describes it
 * (see types.js): the page trusts its own server's OpenAPI contract rather than re-validating
 * every field, so the type is the caller's claim.
 * @template T
 * @param {string} path
 * @param {RequestOptions} [options]
 * @returns {Promise<Result<T>>}
 */
export const request = async (path, options = {}) => {
  const { method = "GET", body, headers = {}, signal } = options
  /** @type {Response} */
  let response
  try {
    response = await fetch(path, {
      method,
      headers: authHeaders(body === undefined ? headers : { "content-type": "application/json", ...headers }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal === undefined ? {} : { signal }),
      cache: "no-store"
    })
  } catch (cause) {
    if (signal?.aborted !== true) connection.set("offline")
    return { ok: false, error: { kind: "network", message: cause instanceof Error ? cause.message : String(cause) } }
  }
  connection.set("live")
  /** @type {unknown} */
  let parsed
  try {
    parsed = await jsonBody(response)
  } catch (cause) {
    return { ok: false, error: { kind: "network", message: cause instanceof Error ? cause.message : String(cause) } }
  }
  if (response.status === 401) keyRequired.set(true)
  if (!response.ok) {
    const message = isErrorBody(parsed) ? parsed.message : `${response.status} ${response.statusText}`
    return {
      ok: false,
      error: isErrorBody(parsed)
        ? { kind: "http", status: response.status, message, body: parsed }
        : { kind: "http", status: response.status, message }
    }
  }
  return { ok: true, value: /** @type {T} */ (parsed), status: response.status, headers: response.headers }
}

/**
 * A human sentence for an error.
 * @param {ApiError} error
 */
export const describeError = (error) =>
  error.kind === "network" ? `Cannot reach the service (${error.message})` : `${error.status}: ${error.message}`

/**
 * A query string from the defined entries.
 * @param {Record<string, string | number | undefined>} params
 */
export const query = (params) => {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== "") search.set(name, String(value))
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}
