/** `npm start`: the service on HOST:PORT (default 127.0.0.1:8080) until SIGTERM/SIGINT. */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Server from "./http/Server.js"

NodeRuntime.runMain(Layer.launch(Server.layer))
