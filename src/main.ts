/**
 * `npm start` (compiled: `node dist/src/main.js`; `npm run dev` runs this file through tsx): the
 * service on HOST:PORT (default 127.0.0.1:8080) until SIGTERM/SIGINT. LOG_FORMAT and LOG_LEVEL set
 * the log output (Logging.ts).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as EventLoop from "./http/EventLoop.js"
import * as Server from "./http/Server.js"
import * as Topology from "./jobs/Topology.js"
import * as Logging from "./Logging.js"

// The time-sliced scheduler (5 ms slices: 2 and 20 ms measured the same during a burst, see
// EventLoop.ts) where the topology wants it (`Topology.usesTimeSlicedScheduler`).
const service = Effect.flatMap(Topology.usesTimeSlicedScheduler, (sliced) =>
  sliced ? Effect.withScheduler(Server.run, EventLoop.timeSliced(5)) : Server.run
)

NodeRuntime.runMain(Effect.zipRight(Logging.install, service))
