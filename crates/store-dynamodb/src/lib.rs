//! The DynamoDB backend of [`store::JobStore`], [`store::KeyStore`],
//! [`store::EventStore`] and [`store::SourceStore`]. The only crate that knows aws-sdk-dynamodb.
//!
//! One table, keyed `pk`/`sk`. A job is one item: its full state as JSON in
//! `job`, plus the few attributes conditions and indexes need. Work that is
//! due carries `dueShard` and `dueAt`, which puts it in the sparse `due`
//! index; a finished job drops them and leaves the index, so finding due work
//! costs the same however many finished jobs the table keeps.

mod attempts;
mod capacity;
mod codec;
mod config;
mod due;
mod events;
mod jobs;
mod keys;
mod layout;
mod listing;
mod schema;
mod sources;
mod store;
mod write;

pub use capacity::{CapacityMeter, Units};
pub use config::{DynamoConfig, DynamoConfigError};
pub use layout::{Difference, Index, KeyAttribute, Keys, Layout, Projection};
pub use schema::{CreateTableError, TableStatus, create_table};
pub use store::DynamoStore;
/// Whether [`Units`] are read or write units.
pub use telemetry::Access;
