//! tonic glue: `x-request-id` as trace id, idempotency keys on outgoing calls, Status mapping.
