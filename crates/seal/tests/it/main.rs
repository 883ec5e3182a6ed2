//! The seal crate's tests: one binary, a module per area. The KMS tests run
//! against moto's server (`testkit::moto_endpoint`).

mod keyfile;
mod kms;
mod redaction;
mod sealed_json;
mod sealer;
mod support;
