/**
 * A budget's optional request rate (`600/minute`): the value, and parsing/formatting it for
 * configuration and the HTTP API. Re-exported by `Budget`. The definition is the domain's (it
 * imports only `effect`), so the contract and the engine read rates the same way.
 */
export { formatRate, parseRate, type Rate } from "../../domain/Rate.js"
