//! The seam between a [`Sealer`](crate::Sealer) and whatever keeps the key
//! that wraps its data keys: AWS KMS ([`Kms`](crate::Kms)) or a local key
//! file ([`KeyFile`](crate::KeyFile)).

use std::fmt;

use async_trait::async_trait;

use crate::{DataKey, Fresh, SealError};

/// Makes data keys and unwraps them again. `Debug` must not show key
/// material (the implementations here show key ids only).
#[async_trait]
pub trait KeyWrap: Send + Sync + fmt::Debug {
    /// The id of the key new data keys are wrapped under; stored in each
    /// [`Sealed`](crate::Sealed) as `kid`.
    fn key_id(&self) -> &str;

    /// A new data key and its wrapped form, under [`KeyWrap::key_id`].
    async fn new_data_key(&self, fresh: &dyn Fresh) -> Result<(DataKey, Vec<u8>), SealError>;

    /// The data key `wrapped` under the key `key_id` (named `unwrap_key`,
    /// not `unwrap`, so it never reads as `Result::unwrap`).
    async fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, SealError>;
}
