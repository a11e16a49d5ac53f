/**
 * How request parts are read off the wire, shared by every route: strict decoding (all errors, no
 * unknown fields), decimal-only numbers in query strings and headers, `kolSerial` as string or number,
 * bounded batches and bodies that may be absent.
 */
import { JSONSchema, Schema } from "effect"
import { MAX_ITEMS_PER_BATCH } from "./Job.js"

/** Every decode error is reported (not only the first), and unknown fields are errors, not ignored. */
export const strict = { parseOptions: { errors: "all", onExcessProperty: "error" } } as const

/**
 * Numbers in query strings and headers: decimal digits only. `NumberFromString` alone is `Number()`,
 * which also reads `0x10` as 16, `1e3` as 1000, `" 7 "` as 7 and `""` as 0.
 */
const decimalString = (pattern: RegExp, expected: string) =>
  Schema.String.pipe(
    Schema.filter((s) => pattern.test(s) || `Expected ${expected}, actual ${JSON.stringify(s.slice(0, 40))}`),
    Schema.compose(Schema.NumberFromString)
  )
/** A decimal integer written in a query string or header (`16`, not `0x10` or `1e1`). */
export const IntFromDecimal = decimalString(/^-?[0-9]{1,15}$/, "a decimal integer").pipe(Schema.compose(Schema.Int))
/** A decimal number written in a query string (`2.5`, not `0x10` or `1e1`). */
export const NumberFromDecimal = decimalString(/^-?[0-9]{1,15}(\.[0-9]{1,15})?$/, "a decimal number")

/**
 * `kolSerial` as a string (`"101"`), or as a whole number (`101`), which is normalised to its string:
 * the forum's serials are digits, and clients that hold them as numbers should not get a 400.
 */
export const kolSerialInput = (serial: Schema.Schema<string, string>) =>
  Schema.Union(
    Schema.String,
    Schema.transform(Schema.Int.pipe(Schema.nonNegative()), Schema.String, {
      strict: true,
      decode: (n) => String(n),
      encode: (s) => Number(s)
    })
  ).pipe(Schema.compose(serial))

/** A batch of items: at most `MAX_ITEMS_PER_BATCH`. */
export const batch = <A, I>(item: Schema.Schema<A, I>) => Schema.Array(item).pipe(Schema.maxItems(MAX_ITEMS_PER_BATCH))

/** A body that may be absent: no body decodes as `{}` instead of failing. */
export const optionalBody = <A, I>(body: Schema.Schema<A, I>) =>
  Schema.compose(
    Schema.transform(Schema.Unknown, Schema.Unknown, {
      strict: true,
      decode: (u) => u ?? {},
      encode: (u) => u
    }),
    body
  ).annotations({ jsonSchema: JSONSchema.make(body), ...strict })
