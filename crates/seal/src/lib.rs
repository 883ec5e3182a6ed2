//! Secrets sealed at rest: AES-256-GCM envelope encryption.
//!
//! Every secret hookline stores will be sealed with this crate: endpoints'
//! signing secrets, endpoints' auth credentials (basic, bearer, header,
//! OAuth2 client secrets), inbound sources' verification secrets, and
//! tenants' signing secrets (SPEC section 13: "no stored item holds
//! plaintext"). Wiring it into the stores is a later step; nothing uses it
//! yet.
//!
//! - A [`Sealer`] (one per process) seals a secret under its current
//!   [`DataKey`] with the record's identity as AAD (the *context*, e.g.
//!   `b"endpoint\0{tenant}\0{id}"`), so a sealed value copied into another
//!   record does not open there. The result, [`Sealed`], carries the
//!   wrapping key's id, the wrapped data key, the nonce and the ciphertext:
//!   `{"kid":..,"dk":..,"n":..,"ct":..}`, base64 strings.
//! - Data keys are made and unwrapped by a [`KeyWrap`]: [`Kms`] (AWS KMS,
//!   `--kms-key ARN`: `GenerateDataKey` and `Decrypt` under the encryption
//!   context `{"purpose": "hookline data key"}`) or [`KeyFile`] (a local
//!   0600 JSON file of keys; rotation keeps old keys for unwrapping). A
//!   sealer unwraps each data key once and keeps it, so opening many
//!   records costs one `Decrypt` per data key, not one per record.
//! - Nonces are synthetic: HMAC-SHA256 (under a key derived from the data
//!   key) of the context and plaintext, so sealing the same value for the
//!   same record twice under one data key gives the same bytes (a store's
//!   idempotent conditional write, issued again, is the same write), and
//!   distinct (context, plaintext) pairs never share a nonce. The price,
//!   as for any deterministic scheme: equal secrets in the same record
//!   under the same data key are visibly equal.
//! - Randomness is a parameter ([`Fresh`]: [`SystemFresh`] in production,
//!   [`RngFresh`] over a seeded generator in tests).
//! - Nothing secret reaches `Debug`, `Display` or an error: data keys,
//!   key files and sealers show key ids only, and key material is zeroized
//!   when dropped.

mod error;
mod fresh;
mod key;
mod keyfile;
mod kms;
mod record;
mod sealed;
mod sealer;
mod wrap;

pub use error::SealError;
pub use fresh::{Fresh, RngFresh, SystemFresh};
pub use key::{DATA_KEY_LEN, DataKey, SEAL_NONCE_LEN, TAG_LEN};
pub use keyfile::{KEY_FILE_KIND, KEY_FILE_VERSION, KeyFile, LOCAL_KEY_PREFIX, WRAPPED_LEN};
pub use kms::{ENCRYPTION_CONTEXT, Kms};
pub use record::RecordView;
pub use sealed::Sealed;
pub use sealer::{CACHED_DATA_KEYS, SEALED_MEMBER, SEALS_PER_DATA_KEY, Sealer};
pub use wrap::KeyWrap;
