/** The jobs layer's errors as the contract's: the one place a store outage or a missing job becomes a status. */
import { Effect } from "effect"
import type { StoreError } from "../../jobs/JobStore.js"
import type { IdempotencyConflict, JobNotFound } from "../../jobs/Jobs.js"
import type { StorageFailing } from "../../jobs/StorageHealth.js"
import { Conflict, NotFound, Unavailable } from "../Api.js"

export const storeUnavailable = (error: StoreError) =>
  Effect.logError(error.message, error.cause).pipe(
    Effect.zipRight(Effect.fail(new Unavailable({ message: "the job database is unavailable; try again" })))
  )

/** Writes fail (a full disk, …): the outage is logged once by StorageHealth, not per refused request. */
export const storageFailing = (error: StorageFailing) => Effect.fail(new Unavailable({ message: error.message }))

export const notFound = (error: JobNotFound) => Effect.fail(new NotFound({ message: `no job with id "${error.id}"` }))

export const conflict = (error: IdempotencyConflict) =>
  Effect.fail(new Conflict({ message: `Idempotency-Key "${error.key}" was already used for a different request` }))
