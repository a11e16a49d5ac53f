/**
 * A minimal forum upstream for `bench:http`: raw node:http, a fixed latency per call, almost no CPU
 * of its own — so the benchmark measures the client side, not the simulator. (The sandbox is an
 * Effect HTTP server with fault injection; at 2,500 calls/s its own CPU shows up in every
 * contender's time.) Prints `listening <port>`; `LATENCY_MS` may be changed with
 * `PUT /__latency/<ms>`, which also resets the counters `GET /__stats` reports (calls, peak in flight).
 */
import { createServer } from "node:http"

let latencyMs = Number(process.env.LATENCY_MS ?? 20)
let calls = 0
let inFlight = 0
let peakInFlight = 0
const interactions = (id: string) =>
  JSON.stringify({ views: 1000 + id.length * 7, likes: 40, comments: 5, shares: 2, engagementRate: 0.047 })

const server = createServer((req, res) => {
  const url = req.url ?? "/"
  const latency = url.startsWith("/__latency/")
  if (latency) {
    latencyMs = Number(url.slice("/__latency/".length))
    calls = 0
    peakInFlight = 0
  }
  req.resume()
  req.on("end", () => {
    if (latency) return void res.writeHead(204).end()
    if (url === "/__stats") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ calls, peakInFlight }))
      return
    }
    if (req.method === "POST" && url === "/auth/login") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t", expiresIn: 3600 }))
      return
    }
    const match = /^\/articles\/([^/]+)\/interactions$/.exec(url)
    if (req.method === "GET" && match?.[1] !== undefined) {
      const body = interactions(match[1])
      calls++
      peakInFlight = Math.max(peakInFlight, ++inFlight)
      setTimeout(() => {
        inFlight--
        res.writeHead(200, { "content-type": "application/json" }).end(body)
      }, latencyMs)
      return
    }
    res.writeHead(404).end()
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, "127.0.0.1", () => {
  const address = server.address()
  console.log(`listening ${typeof address === "object" && address !== null ? address.port : "?"}`)
})
