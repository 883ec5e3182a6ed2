//! The stored text of the records that hold secrets, sealed (SPEC section
//! 13: no stored item holds a plaintext secret), the same on every store.
//!
//! An endpoint's signing secrets and auth, a source's verification and a
//! tenant's signing secrets are sealed by the store's [`Sealer`] into the
//! record's `"sealed"` member ([`Sealer::seal_record`]), for the record
//! they belong to: the context is `kind\0tenant\0id`, so a sealed value
//! copied into another record, or another tenant's, does not open there.
//! A record stored before secrets were sealed (plaintext) is read as it is
//! and sealed by its next write.

use domain::{Endpoint, Source, TenantId, TenantSecrets};
use seal::{RecordView, SealError, Sealer};

use crate::StoreError;

/// The members of an endpoint's record that hold secrets.
pub const ENDPOINT_SECRETS: &[&str] = &["secrets", "auth"];
/// The member of a source's record that holds its verification secrets.
pub const SOURCE_SECRETS: &[&str] = &["verify"];
/// The members of a tenant's signing secrets record that hold them.
pub const SIGNING_SECRETS: &[&str] = &["current", "previous"];

fn context(kind: &str, tenant: &str, id: &str) -> Vec<u8> {
    [kind.as_bytes(), tenant.as_bytes(), id.as_bytes()].join(&0)
}

/// The context of a record that names its tenant and id.
fn context_in(kind: &'static str) -> impl FnOnce(&RecordView<'_, '_>) -> Vec<u8> {
    move |record| {
        context(
            kind,
            &record.string("tenant").unwrap_or_default(),
            &record.string("id").unwrap_or_default(),
        )
    }
}

/// A seal that did not happen: nothing was written.
fn not_sealed(what: &str, err: SealError) -> StoreError {
    StoreError::Unavailable(format!("cannot seal the secrets of {what}: {err}"))
}

/// Secrets that do not open: the key service is not answering now
/// (retryable), or the record cannot be read with this installation's keys.
fn not_opened(what: &str, err: SealError) -> StoreError {
    if err.is_retryable() {
        StoreError::Unavailable(format!("cannot open the secrets of {what}: {err}"))
    } else {
        StoreError::Corrupt(format!("the sealed secrets of {what} do not open: {err}"))
    }
}

/// An endpoint's stored text, its secrets sealed.
pub async fn seal_endpoint(sealer: &Sealer, endpoint: &Endpoint) -> Result<String, StoreError> {
    let text = domain::record::endpoint::encode_endpoint(endpoint);
    let id = endpoint.id.to_string();
    sealer
        .seal_record(
            &context("endpoint", endpoint.tenant.as_str(), &id),
            &text,
            ENDPOINT_SECRETS,
        )
        .await
        .map_err(|e| not_sealed(&format!("endpoint {id}"), e))
}

/// An endpoint from its stored text, sealed or (stored by an earlier
/// release) not.
pub async fn open_endpoint(sealer: &Sealer, text: &str) -> Result<Endpoint, StoreError> {
    let opened = sealer
        .open_record(text, context_in("endpoint"))
        .await
        .map_err(|e| not_opened("an endpoint", e))?;
    domain::record::endpoint::decode_endpoint(&opened)
        .map_err(|e| StoreError::Corrupt(format!("endpoint record: {e}")))
}

/// A source's stored text, its verification sealed.
pub async fn seal_source(sealer: &Sealer, source: &Source) -> Result<String, StoreError> {
    let text = domain::record::source::encode_source(source);
    let id = source.id.to_string();
    sealer
        .seal_record(
            &context("source", source.tenant.as_str(), &id),
            &text,
            SOURCE_SECRETS,
        )
        .await
        .map_err(|e| not_sealed(&format!("source {id}"), e))
}

/// A source from its stored text, sealed or not.
pub async fn open_source(sealer: &Sealer, text: &str) -> Result<Source, StoreError> {
    let opened = sealer
        .open_record(text, context_in("source"))
        .await
        .map_err(|e| not_opened("a source", e))?;
    domain::record::source::decode_source(&opened)
        .map_err(|e| StoreError::Corrupt(format!("source record: {e}")))
}

/// A tenant's signing secrets as stored, sealed.
pub async fn seal_signing_secrets(
    sealer: &Sealer,
    tenant: &TenantId,
    secrets: &TenantSecrets,
) -> Result<String, StoreError> {
    let what = || format!("tenant {tenant}'s signing secrets");
    let text = serde_json::to_string(secrets)
        .map_err(|e| not_sealed(&what(), SealError::Malformed(e.to_string())))?;
    sealer
        .seal_record(&context("signing", tenant.as_str(), ""), &text, SIGNING_SECRETS)
        .await
        .map_err(|e| not_sealed(&what(), e))
}

/// A tenant's signing secrets from their stored text, sealed or not.
pub async fn open_signing_secrets(
    sealer: &Sealer,
    tenant: &TenantId,
    text: &str,
) -> Result<TenantSecrets, StoreError> {
    let what = || format!("tenant {tenant}'s signing secrets");
    let opened = sealer
        .open_record(text, |_| context("signing", tenant.as_str(), ""))
        .await
        .map_err(|e| not_opened(&what(), e))?;
    // The error names the member, never its value.
    serde_json::from_str(&opened).map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}
