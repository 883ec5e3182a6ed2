//! The table hookline needs, as one value ([`Layout::needed`]), the same
//! value read back from `DescribeTable` and `DescribeTimeToLive`, and what
//! differs between the two, said in plain words ([`Difference`]).

use std::fmt;

use aws_sdk_dynamodb::types::{
    KeyType, ProjectionType, TableDescription, TimeToLiveDescription, TimeToLiveStatus,
};

use crate::schema::{DEAD_INDEX, DEAD_KEY, DUE_AT, DUE_INDEX, DUE_SHARD, EXPIRES_AT, LEASE_UNTIL, PK, SK};

/// A key attribute and its scalar type (`S`, `N` or `B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: String,
    pub kind: String,
}

/// A partition key and, usually, a sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub partition: KeyAttribute,
    pub sort: Option<KeyAttribute>,
}

/// What an index copies from the table besides the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    KeysOnly,
    /// These attributes, sorted.
    Include(Vec<String>),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    pub keys: Keys,
    pub projection: Projection,
}

/// A table's key schema, global secondary indexes and TTL attribute (`None`:
/// TTL off): what hookline relies on. Billing and capacity are the
/// operator's to choose and are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub keys: Keys,
    pub indexes: Vec<Index>,
    pub ttl: Option<String>,
}

/// One way an existing table differs from [`Layout::needed`]. Its `Display`
/// says what is wrong and what `create_table` would do about it, or why it
/// cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The table's own keys are not hookline's; they never change.
    KeySchema { found: Keys, needed: Keys },
    /// An index hookline queries is not there: it can be added.
    MissingIndex(Index),
    /// An index of that name exists with other keys or projection; neither
    /// changes in place.
    WrongIndex { found: Index, needed: Index },
    /// TTL is off: it can be switched on.
    TtlOff { needed: String },
    /// TTL is on another attribute; a table has one, and switching it may
    /// take something else's expiry away.
    TtlElsewhere { found: String, needed: String },
}

impl Difference {
    /// Whether `create_table` makes this change itself: adding is safe,
    /// anything else would break what the table holds or can never happen.
    pub fn can_apply(&self) -> bool {
        matches!(self, Difference::MissingIndex(_) | Difference::TtlOff { .. })
    }

    /// The change as done, for a difference [`Self::can_apply`] allows.
    pub fn applied(&self) -> String {
        match self {
            Difference::MissingIndex(index) => format!(
                "index `{}` was missing: created it keyed {}, {}",
                index.name, index.keys, index.projection
            ),
            Difference::TtlOff { needed } => format!("TTL was off: enabled it on {needed}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::KeySchema { found, needed } => write!(
                f,
                "key schema is {found}, hookline needs {needed}: a table's keys cannot change; \
                 create a new table"
            ),
            Difference::MissingIndex(index) => write!(
                f,
                "index `{}` is missing: would create it keyed {}, {}",
                index.name, index.keys, index.projection
            ),
            Difference::WrongIndex { found, needed } => write!(
                f,
                "index `{}` is keyed {}, {}; hookline needs {}, {}: an index's keys and projection \
                 cannot change; delete the index so it can be created again",
                found.name, found.keys, found.projection, needed.keys, needed.projection
            ),
            Difference::TtlOff { needed } => write!(f, "TTL is off: would enable it on {needed}"),
            Difference::TtlElsewhere { found, needed } => write!(
                f,
                "TTL is on {found}, hookline needs it on {needed}: a table has one TTL attribute; \
                 disable it if nothing else relies on it"
            ),
        }
    }
}

impl fmt::Display for KeyAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)
    }
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sort {
            Some(sort) => write!(f, "{} / {sort}", self.partition),
            None => write!(f, "{} alone", self.partition),
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Projection::KeysOnly => f.write_str("projecting keys only"),
            Projection::Include(names) => write!(f, "projecting {}", names.join(", ")),
            Projection::All => f.write_str("projecting every attribute"),
        }
    }
}

fn attribute(name: &str, kind: &str) -> KeyAttribute {
    KeyAttribute {
        name: name.to_owned(),
        kind: kind.to_owned(),
    }
}

fn keys(partition: KeyAttribute, sort: KeyAttribute) -> Keys {
    Keys {
        partition,
        sort: Some(sort),
    }
}

impl Layout {
    /// hookline's table: `pk`/`sk`; the sparse `due` index a poll reads
    /// (only due times and leases, so an index write stays one unit); the
    /// sparse keys-only `dead` index of failed jobs; TTL on `expiresAt`.
    pub fn needed() -> Layout {
        Layout {
            keys: keys(attribute(PK, "S"), attribute(SK, "S")),
            indexes: vec![
                Index {
                    name: DUE_INDEX.to_owned(),
                    keys: keys(attribute(DUE_SHARD, "S"), attribute(DUE_AT, "N")),
                    projection: Projection::Include(vec![LEASE_UNTIL.to_owned()]),
                },
                Index {
                    name: DEAD_INDEX.to_owned(),
                    keys: keys(attribute(DEAD_KEY, "S"), attribute(SK, "S")),
                    projection: Projection::KeysOnly,
                },
            ],
            ttl: Some(EXPIRES_AT.to_owned()),
        }
    }

    /// An existing table's layout, as DynamoDB describes it. TTL being
    /// enabled counts as on; being disabled, as off.
    pub fn described(table: &TableDescription, ttl: Option<&TimeToLiveDescription>) -> Layout {
        let kind_of = |name: &str| {
            table
                .attribute_definitions()
                .iter()
                .find(|d| d.attribute_name() == name)
                .map_or_else(|| "?".to_owned(), |d| d.attribute_type().as_str().to_owned())
        };
        let keys_of = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            let of = |kind: KeyType| {
                schema
                    .iter()
                    .find(|k| *k.key_type() == kind)
                    .map(|k| attribute(k.attribute_name(), &kind_of(k.attribute_name())))
            };
            Keys {
                partition: of(KeyType::Hash).unwrap_or_else(|| attribute("?", "?")),
                sort: of(KeyType::Range),
            }
        };
        let indexes = table
            .global_secondary_indexes()
            .iter()
            .map(|index| Index {
                name: index.index_name().unwrap_or_default().to_owned(),
                keys: keys_of(index.key_schema()),
                projection: match index.projection() {
                    Some(p) if p.projection_type() == Some(&ProjectionType::All) => Projection::All,
                    Some(p) if p.projection_type() == Some(&ProjectionType::Include) => {
                        let mut names = p.non_key_attributes().to_vec();
                        names.sort();
                        Projection::Include(names)
                    }
                    _ => Projection::KeysOnly,
                },
            })
            .collect();
        let ttl = ttl
            .filter(|d| {
                matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
            })
            .and_then(|d| d.attribute_name())
            .map(str::to_owned);
        Layout {
            keys: keys_of(table.key_schema()),
            indexes,
            ttl,
        }
    }

    /// How `existing` falls short of `self`, in the order to fix it: keys,
    /// then indexes in `self`'s order, then TTL. Indexes `self` does not
    /// name are left out: hookline writes no item into them.
    pub fn differences(&self, existing: &Layout) -> Vec<Difference> {
        let mut differences = Vec::new();
        if existing.keys != self.keys {
            differences.push(Difference::KeySchema {
                found: existing.keys.clone(),
                needed: self.keys.clone(),
            });
        }
        for needed in &self.indexes {
            match existing.indexes.iter().find(|i| i.name == needed.name) {
                None => differences.push(Difference::MissingIndex(needed.clone())),
                Some(found) if found != needed => differences.push(Difference::WrongIndex {
                    found: found.clone(),
                    needed: needed.clone(),
                }),
                Some(_) => {}
            }
        }
        match (&existing.ttl, &self.ttl) {
            (None, Some(needed)) => differences.push(Difference::TtlOff {
                needed: needed.clone(),
            }),
            (Some(found), Some(needed)) if found != needed => differences.push(Difference::TtlElsewhere {
                found: found.clone(),
                needed: needed.clone(),
            }),
            _ => {}
        }
        differences
    }
}
