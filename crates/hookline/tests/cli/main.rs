//! The real `hookline` binary as a child process, one module per area: the
//! README's DynamoDB path and the serving commands (`serve`), parity with
//! what `deploy/` and `localstack/` declare (`deploy_parity`), `dev`,
//! crashes and stops (`crash`), `keys`, logs (`logs`), the listener and the
//! network (`network`), the key that seals secrets (`sealing`), `table
//! create` on tables it did not make (`table`), and one-line errors for bad
//! input (`usage_errors`).
//! `support` holds what they share.

mod crash;
mod deploy_parity;
mod dev;
mod keys;
mod logs;
mod network;
mod production;
mod sealing;
mod serve;
mod support;
mod table;
mod usage_errors;
