import { Effect } from "effect"
import { Engine, CircuitBreaker } from "../src/index.js"
const N = 100_000
const items = Array.from({ length: N }, (_, i) => i)
const prog = Effect.gen(function* () {
  for (let k = 0; k < 10; k++) {
    const breaker = yield* CircuitBreaker.make("w1", { rule: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 20, window: "10 seconds" }) })
    const t0 = performance.now()
    yield* Engine.run(items, (i) => Effect.succeed(i), { maxConcurrent: 100, breaker })
    if (k > 6) console.log("full", ((performance.now() - t0) * 1000 / N).toFixed(2), "µs/task")
  }
})
Effect.runPromise(prog)
