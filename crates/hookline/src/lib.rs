//! hookline as a library: the wiring every `hookline` command runs, so the
//! binary only parses its arguments and the tests build the same process
//! the binary does.
//!
//! [`App`] is one process's parts (store, clock, providers, SSRF policy,
//! metrics) and builds its intake and processors; [`open_store`] turns a
//! store URL into a backend, sealing secrets with the key [`sealer_for`]
//! finds; [`serve_together`] runs the API and the
//! scheduled processor, woken by every accepted job, until shutdown;
//! [`run`] is a whole command of the [`cli`].

mod app;
mod backup;
pub mod cli;
mod commands;
mod dev_sink;
mod health;
mod keys;
mod logging;
pub mod out;

pub use app::{
    App, FILE_BLOBS_MARGIN, Serving, default_key_file, open_blobs, open_store, sealer_for, serve_together,
};
pub use cli::{SealArgs, StoreArgs};
pub use commands::{UsageError, run};
