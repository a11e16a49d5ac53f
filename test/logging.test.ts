/**
 * LOG_FORMAT (src/Logging.ts): the json format's shape (one object per line, annotations as fields,
 * secrets redacted), logfmt, the level, a clear error for an unknown format — and the real service
 * with LOG_FORMAT=json, every line it prints parsed as JSON and a job's id found as a field.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Console, Effect, Either, Redacted, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Logging from "../src/Logging.js"
import * as Service from "./support/service.js"

/** Runs `self` with the given environment and Logging installed; returns what was printed, line by line. */
const printed = <A, E>(env: Record<string, string>, self: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const current = yield* Effect.console
    const capture: Console.Console = {
      ...current,
      unsafe: { ...current.unsafe, log: (...args: ReadonlyArray<unknown>) => void lines.push(args.map(String).join(" ")) }
    }
    yield* Logging.install.pipe(Effect.zipRight(self), Effect.withConsole(capture))
    return lines
  }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

const Line = Schema.parseJson(
  Schema.Struct({ timestamp: Schema.String, level: Schema.String, fiber: Schema.String, message: Schema.Unknown }, {
    key: Schema.String,
    value: Schema.Unknown
  })
)
const decodeLine = Schema.decodeUnknownSync(Line)

describe("LOG_FORMAT", () => {
  it.effect("json: one object per line, every annotation a field, spans and the cause included", () =>
    Effect.gen(function* () {
      const lines = yield* printed(
        { LOG_FORMAT: "json" },
        Effect.gen(function* () {
          yield* Effect.logInfo("job accepted: 2 item(s)\nsecond line").pipe(
            Effect.annotateLogs({ job: "j-1", kind: "intraday-triggers", items: 2 }),
            Effect.withLogSpan("request")
          )
          yield* Effect.logError("could not resume job", Cause.fail(new Error("boom"))).pipe(
            Effect.annotateLogs({ jobId: "j-2", message: "an annotation named like a field" })
          )
        })
      )
      expect(lines).toHaveLength(2)
      for (const line of lines) expect(line).not.toContain("\n")
      const [accepted, failed] = lines.map((l) => decodeLine(l))
      expect(accepted).toMatchObject({
        level: "INFO",
        message: "job accepted: 2 item(s)\nsecond line",
        job: "j-1",
        kind: "intraday-triggers",
        items: 2,
        spans: { request: 0 }
      })
      expect(accepted?.fiber).toMatch(/^#\d+$/)
      expect(Number.isNaN(Date.parse(accepted?.timestamp ?? ""))).toBe(false)
      expect(failed).toMatchObject({
        level: "ERROR",
        message: "could not resume job",
        jobId: "j-2",
        "annotation.message": "an annotation named like a field"
      })
      expect(failed?.["cause"]).toContain("boom")
    }))

  it.effect("json: a failure logged without a message (a crash report) carries its cause's first line as the message", () =>
    Effect.gen(function* () {
      const lines = yield* printed({ LOG_FORMAT: "json" }, Effect.logError(Cause.fail(new Error("disk is full"))))
      const [report] = lines.map((l) => decodeLine(l))
      expect(report?.message).toEqual(expect.stringContaining("disk is full"))
      expect(report?.["cause"]).toContain("disk is full")
    }))

  it.effect("json: a Redacted value prints as <redacted>", () =>
    Effect.gen(function* () {
      const lines = yield* printed(
        { LOG_FORMAT: "json" },
        Effect.logInfo("login", { password: Redacted.make("hunter2") }).pipe(Effect.annotateLogs({ apiKey: Redacted.make("s3cret") }))
      )
      expect(lines.join("\n")).not.toMatch(/hunter2|s3cret/)
      expect(decodeLine(lines[0])).toMatchObject({ apiKey: "<redacted>" })
    }))

  it.effect("logfmt: key=value lines with the annotations", () =>
    Effect.gen(function* () {
      const lines = yield* printed({ LOG_FORMAT: "logfmt" }, Effect.logWarning("slow").pipe(Effect.annotateLogs({ job: "j-3" })))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/level=WARN .*message=slow .*job=j-3/)
    }))

  it.effect("LOG_LEVEL sets the minimum level (here WARN: info and debug lines are dropped)", () =>
    Effect.gen(function* () {
      const lines = yield* printed(
        { LOG_FORMAT: "json", LOG_LEVEL: "warn" },
        Effect.logInfo("hidden").pipe(Effect.zipRight(Effect.logDebug("hidden")), Effect.zipRight(Effect.logWarning("shown")))
      )
      expect(lines.map((l) => decodeLine(l).message)).toEqual(["shown"])
    }))

  it.effect("an unknown format fails naming LOG_FORMAT and the formats it takes", () =>
    Effect.gen(function* () {
      const result = yield* printed({ LOG_FORMAT: "xml" }, Effect.logInfo("never")).pipe(Effect.either)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        const message = String(result.left)
        expect(message).toContain("LOG_FORMAT")
        expect(message).toContain("pretty, logfmt, json")
      }
    }))

  it.live(
    "the service with LOG_FORMAT=json: every line is JSON, a job's id is a field, the API key never appears",
    () =>
      Effect.gen(function* () {
        const dataDir = yield* Effect.acquireRelease(
          Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "pp-logging-"))),
          (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
        )
        const apiKey = "test-api-key-0d5f2c"
        const service = yield* Service.start({
          LOG_FORMAT: "json",
          DATA_DIR: dataDir,
          SANDBOX_PROFILE: "instant",
          API_KEY: apiKey,
          LLM_API_KEY: "test-llm-key-9a71e"
        })
        // The support module's URL is read from the pretty line; here the JSON line's `dashboard` field says it.
        const listening = service
          .output()
          .split("\n")
          .filter((l) => l.length > 0)
          .map((l) => decodeLine(l))
          .find((l) => String(l.message).includes("listening on"))
        const url = String(listening?.["dashboard"]).replace(/\/$/, "")
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

        const answer = yield* Effect.tryPromise(() =>
          fetch(`${url}/api/intraday/parallel/execute-multiple`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
            body: JSON.stringify([{ triggerKey: "limit_up" }, { triggerKey: "volume_surge", limit: 5 }])
          }).then((r) => r.text())
        ).pipe(Effect.flatMap(Schema.decodeUnknown(Schema.parseJson(Schema.Struct({ id: Schema.String, status: Schema.String })))))
        expect(answer.status).toBe("completed")

        yield* service.kill("SIGTERM")
        expect(yield* service.exited).toBe(0)

        const output = service.output()
        expect(output).not.toContain(apiKey)
        expect(output).not.toContain("test-llm-key-9a71e")
        const lines = output.split("\n").filter((l) => l.length > 0).map((l) => decodeLine(l))
        const ofJob = lines.filter((l) => l["job"] === answer.id)
        expect(ofJob.map((l) => String(l.message))).toEqual(
          expect.arrayContaining([expect.stringMatching(/^job accepted/), expect.stringMatching(/^job completed/)])
        )
        expect(ofJob.find((l) => String(l.message).startsWith("job completed"))).toMatchObject({
          level: "INFO",
          kind: "intraday-triggers",
          durationMs: expect.any(Number)
        })
        expect(lines.some((l) => String(l.message).startsWith("shutting down"))).toBe(true)
      }).pipe(Effect.scoped),
    120_000
  )
})
