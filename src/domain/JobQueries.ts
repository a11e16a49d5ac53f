/**
 * Reading jobs back: the list with its keyset cursor, a job with its first results, and its results
 * paged by index.
 */
import { Either, Encoding, ParseResult, Schema } from "effect"
import { JobDetail, JobStatus, JobView, MAX_ITEMS_PER_BATCH } from "./Job.js"
import { JobKind } from "./Kinds.js"
import { IntFromDecimal, strict } from "./Wire.js"

/** Where a page of `GET /api/jobs` ended: the last job's creation time and id (the list's sort key). */
export interface JobCursor {
  readonly createdAt: number
  readonly id: string
}

/** Opaque to clients: base64url of `<createdAt>.<id>`. */
export const encodeJobCursor = (cursor: JobCursor) => Encoding.encodeBase64Url(`${cursor.createdAt}.${cursor.id}`)

const decodeJobCursor = (raw: string): Either.Either<JobCursor, string> => {
  const text = Either.getOrElse(Encoding.decodeBase64UrlString(raw), () => "")
  const match = /^([0-9]{1,16})\.([0-9a-zA-Z-]{1,100})$/.exec(text)
  return match?.[1] === undefined || match[2] === undefined
    ? Either.left("Expected a cursor from the `next` field of a previous page")
    : Either.right({ createdAt: Number(match[1]), id: match[2] })
}

export const JobCursorFromString = Schema.transformOrFail(
  Schema.String.pipe(Schema.maxLength(200)),
  Schema.Struct({ createdAt: Schema.Number, id: Schema.String }),
  {
    strict: true,
    decode: (raw, _, ast) =>
      Either.match(decodeJobCursor(raw), {
        onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, raw, message)),
        onRight: ParseResult.succeed
      }),
    encode: (cursor) => ParseResult.succeed(encodeJobCursor(cursor))
  }
)

export const ListJobsParams = Schema.Struct({
  kind: Schema.optionalWith(JobKind, { exact: true }),
  status: Schema.optionalWith(JobStatus, { exact: true }),
  /** Default 50. */
  limit: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(1, 200)), { exact: true }),
  /** The `next` of the previous page: the jobs after it (keyset paging; stable while jobs are created). */
  cursor: Schema.optionalWith(JobCursorFromString, { exact: true }),
  /** Default 0. Offset paging, kept for old clients: jobs created meanwhile shift it (duplicates). */
  offset: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, 1_000_000_000)), { exact: true })
}).annotations(strict)

/** Inline results of `GET /api/jobs/{id}` and a page of `GET /api/jobs/{id}/results`: at most this many. */
export const MAX_RESULTS_PAGE = 1_000

export const JobParams = Schema.Struct({
  /** How many results (by index) to include, 0–1000, default 1000; the rest via `/results`. */
  results: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, MAX_RESULTS_PAGE)), { exact: true })
}).annotations(strict)

export const ResultsParams = Schema.Struct({
  /** The index of the last result already read: the page starts after it. Default: from the start. */
  after: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(0, MAX_ITEMS_PER_BATCH)), { exact: true }),
  /** Default 100, at most 1000. */
  limit: Schema.optionalWith(IntFromDecimal.pipe(Schema.between(1, MAX_RESULTS_PAGE)), { exact: true })
}).annotations(strict)

/** `GET /api/jobs/{id}/events`: SSE reconnect sends the `id` (item seq) of the last event received. */
export const EventsHeaders = Schema.Struct({
  accept: Schema.optional(Schema.String),
  /** Older events than this one are not replayed. */
  "last-event-id": Schema.optional(IntFromDecimal)
})

export const JobPage = Schema.Struct({
  jobs: Schema.Array(JobView),
  /** Jobs matching the filter now (all pages). */
  total: Schema.Number,
  limit: Schema.Number,
  /** Only on offset-paged requests (`offset=`); absent with `cursor=`. */
  offset: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Present when more jobs may follow: pass it as `cursor` for the next page. */
  next: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "JobPage" })

/** `GET /api/jobs/{id}`: the job with its first results by index; `moreResults` links to the rest. */
export const JobWithResults = Schema.Struct({
  ...JobDetail.fields,
  /** Present when finished results beyond `results` exist: where to read them (`/results?after=…`). */
  moreResults: Schema.optionalWith(Schema.String, { exact: true })
}).annotations({ identifier: "Job" })

/** `GET /api/jobs/{id}/results`: finished results in input order, keyset-paged by index. */
export const ResultsPage = Schema.Struct({
  jobId: Schema.String,
  status: JobStatus,
  total: Schema.Number,
  completed: Schema.Number,
  results: JobDetail.fields.results,
  /** Present when more finished results follow: pass it as `after` for the next page. */
  next: Schema.optionalWith(Schema.Number, { exact: true })
}).annotations({ identifier: "ResultsPage" })
