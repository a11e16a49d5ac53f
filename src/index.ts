/**
 * parallel-processor as a library: the HTTP-free engine for running many slow, flaky upstream calls
 * in parallel with timeouts, per-class retries, circuit breakers, upstream budgets and streaming progress.
 */
export * as Adjustable from "./engine/Adjustable.js"
export * as Budget from "./engine/Budget.js"
export * as CircuitBreaker from "./engine/CircuitBreaker.js"
export * as CircuitBreakerRegistry from "./engine/CircuitBreakerRegistry.js"
export * as Engine from "./engine/Engine.js"
export * as EngineMetrics from "./engine/EngineMetrics.js"
export * as Errors from "./engine/Errors.js"
export * as ItemResult from "./engine/ItemResult.js"
export * as LimitAlgorithm from "./engine/LimitAlgorithm.js"
export * as Policy from "./engine/Policy.js"
export * as Progress from "./engine/Progress.js"
export * as RetryPolicy from "./engine/RetryPolicy.js"
export * as RunControl from "./engine/RunControl.js"
export {
  AttemptTimeout,
  CircuitOpen,
  InvalidResponse,
  Permanent,
  RateLimited,
  Skipped,
  Transient,
  type TaskError
} from "./engine/Errors.js"
