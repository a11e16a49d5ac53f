/**
 * The whole service as one Layer: database, durable job engine, processors and upstreams, the
 * HttpApi server with docs, metrics and the dashboard, and a graceful shutdown that stops accepting work, lets
 * running attempts finish within the grace period, and leaves unfinished jobs to resume on restart.
 */
import { HttpApiBuilder, HttpApiSwagger, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Config, Context, Deferred, Duration, Effect, Layer, Metric, Option } from "effect"
import { createServer } from "node:http"
import * as CircuitBreakerRegistry from "../engine/CircuitBreakerRegistry.js"
import * as Database from "../jobs/Database.js"
import { awaitWithin, JobRunner } from "../jobs/JobRunner.js"
import { JobStore } from "../jobs/JobStore.js"
import { Retention } from "../jobs/Retention.js"
import { CoordinationStore } from "../jobs/store/Coordination.js"
import * as Cluster from "../jobs/Cluster.js"
import * as Topology from "../jobs/Topology.js"
import { Jobs } from "../jobs/Jobs.js"
import { JobWorkflowLive } from "../jobs/JobWorkflows.js"
import { StorageHealth } from "../jobs/StorageHealth.js"
import { IntradayTriggersProcessor } from "../processors/IntradayTriggers.js"
import { InteractionsProcessor } from "../processors/Interactions.js"
import { PostGenerationProcessor } from "../processors/PostGeneration.js"
import * as Upstreams from "../upstream/Upstreams.js"
import { Api } from "./Api.js"
import * as EventLoop from "./EventLoop.js"
import * as Handlers from "./Handlers.js"
import * as Metrics from "./Metrics.js"
import * as Tracing from "./Tracing.js"
import * as Ui from "./Ui.js"
import { authorization, hardening, requestGuard } from "./Middleware.js"
import { answerWhileStarting } from "./Starting.js"

const processors = Layer.mergeAll(InteractionsProcessor.layer, PostGenerationProcessor.layer, IntradayTriggersProcessor.layer).pipe(
  Layer.provideMerge(Upstreams.layer),
  Layer.provideMerge(CircuitBreakerRegistry.layerFromConfig)
)

/** Everything but HTTP: usable by an Effect program that wants durable jobs without the server. */
export const core = Layer.merge(JobRunner.drainOnShutdown, Retention.Default).pipe(
  Layer.provideMerge(Layer.mergeAll(Jobs.Default, JobWorkflowLive)),
  Layer.provideMerge(JobRunner.Default),
  Layer.provideMerge(StorageHealth.Default),
  // Single process or cluster: the workflow engine and what differs between them (Topology.ts).
  Layer.provideMerge(Topology.layer),
  Layer.provideMerge(Layer.merge(JobStore.Default, CoordinationStore.Default)),
  Layer.provideMerge(processors),
  Layer.provideMerge(Database.layerFromConfig),
  Layer.provideMerge(Metrics.layer)
)

const listenConfig = Config.all({
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  // Not Config.port: it rejects 0 ("any free port"), which tests and scripts use.
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "Expected a port between 0 and 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8080)
  ),
  grace: Config.duration("SHUTDOWN_GRACE_PERIOD").pipe(Config.withDefault(Duration.seconds(10))),
  // How long a client may take to send a whole request, headers and body. Node's default (5 min)
  // let a client that trickles its body hold a connection and its buffers for minutes.
  requestTimeout: Config.duration("REQUEST_BODY_TIMEOUT").pipe(
    Config.validate({ message: "Expected a duration of at least 1 millisecond", validation: (d) => Duration.toMillis(d) >= 1 }),
    Config.withDefault(Duration.seconds(30))
  )
})

/** The service on HOST:PORT, or on `fixedPort` (a restart keeps the port PORT=0 was given). */
const serviceOn = (fixedPort: number | undefined) => Layer.unwrapEffect(
  Effect.map(listenConfig, ({ host, port: configured, grace, requestTimeout }) => {
    const port = fixedPort ?? configured
    const timeoutMs = Math.ceil(Duration.toMillis(requestTimeout))
    // Past the timeout Node answers 408 and closes the connection. It checks every
    // `connectionsCheckingInterval` (default 30 s, which would stretch a short timeout), and it
    // refuses a headers timeout above the request timeout.
    const server = createServer({
      requestTimeout: timeoutMs,
      headersTimeout: Math.min(timeoutMs, 60_000),
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4)))
    })
    answerWhileStarting(server)
    const http = HttpApiBuilder.serve().pipe(
      Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
      // The dashboard's page and files (no API key: they hold no data).
      Layer.provide(Ui.layer),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      Layer.provide(hardening),
      Layer.provide(
        HttpApiBuilder.api(Api).pipe(Layer.provide(Handlers.layer), Layer.provide(authorization), Layer.provide(requestGuard))
      ),
      Layer.provideMerge(NodeHttpServer.layer(() => server, { host, port })),
      // Request fibers inherit this from the server's runtime: they go before job work (EventLoop.ts).
      Layer.locally(EventLoop.interactive, true)
    )

    // Built after the server, so on shutdown this runs first: jobs start draining (and waiting
    // requests answer 202) at the same moment the server stops accepting connections.
    const graceful = Layer.scopedDiscard(
      Effect.gen(function* () {
        const runner = yield* JobRunner
        const address = yield* HttpServer.addressFormattedWith(Effect.succeed)
        const where = yield* Database.Location
        const sandbox = yield* Effect.serviceOption(Upstreams.UpstreamMode).pipe(
          Effect.map(Option.flatMap((mode) => mode.embeddedSandbox))
        )
        yield* Effect.logInfo(`parallel-processor listening on ${address}`).pipe(
          Effect.annotateLogs({
            dashboard: `${address}/`,
            docs: `${address}/docs`,
            data: Database.describe(where),
            upstreams: Option.getOrElse(sandbox, () => "configured URLs")
          })
        )
        yield* Effect.addFinalizer(() =>
          Effect.gen(function* () {
            yield* Effect.logInfo(`shutting down: no new connections; grace period ${Duration.format(grace)}`)
            yield* Deferred.succeed(runner.shuttingDown, undefined)
            const closed = Effect.async<void>((resume) => {
              server.close(() => resume(Effect.void))
              server.closeIdleConnections()
            })
            const finished = yield* awaitWithin(closed, grace).pipe(Effect.isSuccess)
            if (!finished) server.closeAllConnections()
          })
        )
      })
    )
    // Tracing first: the tracer must be in place before the clients and the server are built, and
    // its exporter flushes after they have shut down (Tracing.ts).
    return graceful.pipe(Layer.provideMerge(http), Layer.provideMerge(core), Layer.provide(Tracing.layer))
  })
)

/** The service: `core` behind the HttpApi server on HOST:PORT. */
export const layer = serviceOn(undefined)

/**
 * `npm start`: the service until interrupted (SIGTERM/SIGINT). A runner whose cluster stalled after
 * losing its database (`Cluster.watchdog`, via the topology) is shut down like on SIGTERM and started again in this
 * process: the HTTP port is closed for a moment and the unfinished jobs resume, as after a restart.
 */
export const run = Effect.suspend(() => {
  let port: number | undefined
  // Suspended: each round builds the service anew, on the port the first round was given.
  return Effect.suspend(() => Layer.build(serviceOn(port))).pipe(
    Effect.tap((context) => {
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag === "TcpAddress") port = address.port
    }),
    Effect.flatMap((context) =>
      Effect.provide(Effect.flatMap(Topology.Topology, (topology) => topology.watchdog), context).pipe(
        // Said before the shutdown begins, so the log reads in order.
        Effect.tapError((stalled) => Effect.logError(`${stalled.message}: restarting the service in this process`))
      )
    ),
    Effect.scoped,
    Effect.catchTag("ClusterStalled", () => Metric.increment(Cluster.stalls)),
    Effect.forever
  )
})
