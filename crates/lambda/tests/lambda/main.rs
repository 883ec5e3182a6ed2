//! The Lambda handlers fed the documents AWS sends (API Gateway HTTP API
//! payload 2.0, an EventBridge scheduled event; `tests/fixtures/`), over
//! the wiring `hookline lambda` builds, against DynamoDB Local.

mod intake;
mod processor;
mod support;
