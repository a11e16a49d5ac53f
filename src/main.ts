/** `npm start`: the service on HOST:PORT (default 127.0.0.1:8080) until SIGTERM/SIGINT. LOG_LEVEL sets the log level (Info). */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Logger, LogLevel } from "effect"
import * as EventLoop from "./http/EventLoop.js"
import * as Server from "./http/Server.js"
import * as Topology from "./jobs/Topology.js"

const logLevel = Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

const service = Effect.flatMap(logLevel, (level) => Server.run.pipe(Logger.withMinimumLogLevel(level)))

// The time-sliced scheduler (5 ms slices: 2 and 20 ms measured the same during a burst, see
// EventLoop.ts) where the topology wants it (`Topology.usesTimeSlicedScheduler`).
NodeRuntime.runMain(
  Effect.flatMap(Topology.usesTimeSlicedScheduler, (sliced) =>
    sliced ? Effect.withScheduler(service, EventLoop.timeSliced(5)) : service
  )
)
