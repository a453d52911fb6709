//! HTTP ingest for surefoot that answers 200 only for data it delivered: validation, idempotency keys, backpressure as status codes
#![deny(missing_docs)]
