//! `DynamoStore`: a client, the store URL's settings and the capacity
//! meter every call feeds. The `JobStore` operations are single-item
//! DynamoDB calls.
//!
//! Write costs on the happy path of a small job, measured (see the cost test
//! and [`CapacityMeter`]): intake put (1 + 1 due index), claim update (1 + 1
//! due index, the projected lease), final put (1 + 1 due index removal): six
//! write units. Jobs are keyed by tenant and shard, so the table itself is the
//! listing and no index entry is written for it. A dead-lettered job adds one
//! for its `dead` index entry, a redrive one to remove it.
//!
//! What lives where: the item codec in `codec.rs`, the conditional-write
//! path every write takes in `write.rs`, listings in `listing.rs`, due work
//! in `due.rs`, and the three traits in `jobs.rs`, `keys.rs` and
//! `events.rs`.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use seal::Sealer;

use crate::{CapacityMeter, DynamoConfig};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: DynamoConfig,
    capacity: Arc<CapacityMeter>,
    /// Seals the secrets in endpoints', sources' and signing secrets'
    /// records, and opens them.
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.config.table)
            .field("endpoint", &self.config.endpoint)
            .field("shards", &self.config.shards)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// A store on `config`'s table through `client`, sealing secrets
    /// with `sealer` (every process on one table needs a sealer over the
    /// same wrapping key, or they cannot read each other's secrets).
    pub fn new(client: Client, config: DynamoConfig, sealer: Arc<Sealer>) -> Self {
        Self {
            client,
            config,
            capacity: Arc::default(),
            sealer,
        }
    }

    /// What this store seals its records' secrets with.
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.sealer
    }

    /// The capacity units this store's calls have consumed so far.
    pub fn capacity(&self) -> &CapacityMeter {
        &self.capacity
    }

    /// The same meter, to hand to [`telemetry::Metrics::watch_capacity`].
    pub fn capacity_meter(&self) -> Arc<CapacityMeter> {
        Arc::clone(&self.capacity)
    }

    pub async fn connect(config: DynamoConfig, sealer: Arc<Sealer>) -> Self {
        let client = config.client().await;
        Self::new(client, config, sealer)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &DynamoConfig {
        &self.config
    }
}
