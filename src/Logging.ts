/**
 * What the service's log lines look like: `LOG_FORMAT` picks one of Effect's own loggers — `pretty`
 * (the default, what `NodeRuntime.runMain` installs: coloured on a terminal), `logfmt`, or `json`
 * for log shippers — and `LOG_LEVEL` the minimum level.
 *
 * `json` is Effect's structured logger with every annotation lifted to a field of its own (a shipper
 * indexes `job`, not `annotations.job`): one object per line on stdout with `timestamp`, `level`,
 * `fiber`, `message`, `cause` and `spans` (ms since each span began) when there are any. An
 * annotation named like one of those keeps its value as `annotation.<name>`. Secrets stay out as in
 * the other formats: `Redacted` values and the HTTP client's credential headers print as
 * `<redacted>` (Effect's own redaction, applied by the same serializer as `Logger.jsonLogger`).
 */
import { Config, Effect, FiberRef, HashSet, Inspectable, Logger, LogLevel, Predicate } from "effect"

export const formats = ["pretty", "logfmt", "json"] as const
export type LogFormat = (typeof formats)[number]

/** `LOG_FORMAT` and `LOG_LEVEL`; an unknown value fails naming the variable and the values it takes. */
export const settings = Config.all({
  format: Config.literal(...formats)("LOG_FORMAT").pipe(Config.withDefault<LogFormat>("pretty")),
  level: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
})

const ownFields = new Set(["timestamp", "level", "fiber", "message", "cause", "spans"])

// JSON.stringify writes an Error as `{}`; Logger.jsonLogger keeps its name and message the same way.
const errorFields = (u: unknown): unknown =>
  u instanceof Error && !Predicate.hasProperty(u, "toJSON") ? { ...u, name: u.name, message: u.message } : u

// A failure logged with no message of its own (the runtime's report of a program that failed:
// `Effect.logError(cause)`) would read `"message":[]`; its first line is what a reader scans for.
const messageOf = (message: unknown, cause: string | undefined): unknown => {
  const parts = Array.isArray(message) ? message.map(errorFields) : errorFields(message)
  if (Array.isArray(parts) && parts.length === 0 && cause !== undefined) return cause.split("\n", 1)[0]
  return parts
}

/** One JSON object per log entry, annotations as top-level fields. */
export const jsonLogger: Logger.Logger<unknown, string> = Logger.map(Logger.structuredLogger, (entry) => {
  const line: Record<string, unknown> = {
    timestamp: entry.timestamp,
    level: entry.logLevel,
    fiber: entry.fiberId,
    message: messageOf(entry.message, entry.cause)
  }
  if (entry.cause !== undefined) line.cause = entry.cause
  if (Object.keys(entry.spans).length > 0) line.spans = entry.spans
  for (const [name, value] of Object.entries(entry.annotations)) {
    line[ownFields.has(name) ? `annotation.${name}` : name] = value
  }
  return Inspectable.stringifyCircular(line)
})

export const loggerFor = (format: LogFormat): Logger.Logger<unknown, void> => {
  switch (format) {
    case "pretty":
      return Logger.prettyLoggerDefault
    case "logfmt":
      return Logger.withConsoleLog(Logger.logfmtLogger)
    case "json":
      return Logger.withConsoleLog(jsonLogger)
  }
}

/**
 * Reads the settings and switches the current fiber, and every fiber it forks from then on, to them.
 * Not scoped on purpose: `NodeRuntime.runMain` reports the program's failure from this same fiber
 * after the program ends, and that last line must be in the chosen format too. A bad setting fails
 * before anything changed, so its error is printed in the default format.
 */
export const install = Effect.flatMap(settings, ({ format, level }) =>
  Effect.zipRight(
    FiberRef.update(FiberRef.currentLoggers, (loggers) =>
      loggers.pipe(HashSet.remove(Logger.defaultLogger), HashSet.remove(Logger.prettyLoggerDefault), HashSet.add(loggerFor(format)))
    ),
    FiberRef.set(FiberRef.currentMinimumLogLevel, level)
  )
)
