//! What the store's calls cost: the capacity units DynamoDB reports for
//! each, index writes included (`ReturnConsumedCapacity::INDEXES`), summed
//! per operation. Benchmarks and cost tests read it; metrics can export it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::ConsumedCapacity;
use telemetry::{Access, CapacityReading, CapacitySource};

/// Capacity units consumed so far, by operation (reads for reads, writes
/// for writes; for on-demand tables these are the request units billed).
#[derive(Debug, Default)]
pub struct CapacityMeter {
    units: Mutex<BTreeMap<&'static str, Units>>,
}

/// One operation's total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Read or write units.
    pub access: Access,
    /// Calls that reported their capacity.
    pub calls: u64,
    /// Units on the table itself.
    pub table: f64,
    /// Units on all indexes together.
    pub indexes: f64,
}

impl Units {
    pub fn total(&self) -> f64 {
        self.table + self.indexes
    }
}

impl CapacityMeter {
    pub(crate) fn record<'a>(
        &self,
        operation: &'static str,
        access: Access,
        consumed: impl IntoIterator<Item = &'a ConsumedCapacity>,
    ) {
        let mut units = self.units.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = units.entry(operation).or_insert(Units {
            access,
            calls: 0,
            table: 0.0,
            indexes: 0.0,
        });
        for capacity in consumed {
            entry.calls += 1;
            let table = capacity.table().and_then(|t| t.capacity_units());
            let indexes: f64 = capacity
                .global_secondary_indexes()
                .map(|gsis| gsis.values().filter_map(|c| c.capacity_units()).sum())
                .unwrap_or_default();
            match table {
                Some(table) => {
                    entry.table += table;
                    entry.indexes += indexes;
                }
                // Without the breakdown, the total is all there is.
                None => entry.table += capacity.capacity_units().unwrap_or_default(),
            }
        }
    }

    /// The totals so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<&'static str, Units> {
        self.units
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// `GET /metrics` reads the meter at every scrape.
impl CapacitySource for CapacityMeter {
    fn capacity(&self) -> Vec<CapacityReading> {
        self.snapshot()
            .into_iter()
            .map(|(operation, units)| CapacityReading {
                operation,
                access: units.access,
                table: units.table,
                indexes: units.indexes,
            })
            .collect()
    }
}
