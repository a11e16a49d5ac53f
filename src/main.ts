/** `npm start`: the service on HOST:PORT (default 127.0.0.1:8080) until SIGTERM/SIGINT. LOG_LEVEL sets the log level (Info). */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Logger, LogLevel } from "effect"
import * as EventLoop from "./http/EventLoop.js"
import * as Server from "./http/Server.js"
import * as Database from "./jobs/Database.js"

const logLevel = Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

const service = Effect.flatMap(logLevel, (level) => Server.run.pipe(Logger.withMinimumLogLevel(level)))

// The time-sliced scheduler (5 ms slices: 2 and 20 ms measured the same during a burst, see
// EventLoop.ts) runs with the embedded database. With PostgreSQL it is off for now: under it a
// single instance did not come back from a database restart (test/cluster.test.ts), not yet explained.
NodeRuntime.runMain(
  Effect.flatMap(Database.location, (where) =>
    where.dialect === "sqlite" ? Effect.withScheduler(service, EventLoop.timeSliced(5)) : service
  )
)
