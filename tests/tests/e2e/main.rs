//! End-to-end tests over real HTTP and DynamoDB Local: intake, processor,
//! mock providers and callback sink, each on its own loopback port.

mod auth;
mod blobs;
mod dead_letter;
mod delivery_options;
mod egress;
mod events;
mod fairness;
mod helpers;
mod idempotency;
mod intake_errors;
mod limits;
mod lost_answers;
mod observability;
mod openapi;
mod pipeline;
mod queues;
mod scheduling;
mod signatures;
mod slow_clients;
mod sources;
mod ssrf;
mod ui;
