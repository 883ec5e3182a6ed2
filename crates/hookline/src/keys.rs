//! `hookline keys create|list|revoke`, `hookline secrets rotate`, and the
//! key and secret `hookline dev` uses.

use anyhow::{Context, bail};
use std::time::Duration;

use domain::{ApiKey, SigningSecret, TenantId, TenantSecrets};
use store::{ApiKeyRecord, KeyStore, StoreError};

use crate::cli::KeysCommand;
use crate::out;

/// The tenant of `hookline dev`'s key.
pub const DEV_TENANT: &str = "dev";

pub async fn run(command: KeysCommand, store: &dyn KeyStore) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { tenant, .. } => {
            let tenant = parse_tenant(&tenant)?;
            let key = ApiKey::generate(&mut rand::rng());
            let record = store_key(store, &key, tenant.clone()).await?;
            let (secrets, created) =
                store::ensure_signing_secrets(store, &tenant, SigningSecret::generate(&mut rand::rng()))
                    .await?;
            // Both on stdout, where `$(...)` and `read` take them, never on
            // stderr (which logs keep): the key on the first line, the
            // tenant's new signing secret, if this made one, on the second.
            let mut shown = key.expose().to_owned();
            if created {
                shown.push('\n');
                shown.push_str(&secrets.current.expose_secret());
            }
            out::stdout(&shown)?;
            out::note(&format!(
                "created key {} for tenant {}: it is shown once (stdout, line 1), only its hash is kept",
                record.key_id(),
                record.tenant
            ));
            if created {
                out::note(&format!(
                    "tenant {tenant}'s callbacks are signed with a new secret, shown once (stdout, line 2); \
                     `hookline secrets rotate` makes another"
                ));
            }
        }
        KeysCommand::List { tenant, .. } => {
            let tenant = tenant.as_deref().map(parse_tenant).transpose()?;
            let keys = store.list_api_keys(tenant.as_ref()).await?;
            let mut table = format!("{:<12}  {:<24}  {:<24}  revoked", "key id", "tenant", "created");
            for key in keys {
                table.push_str(&format!(
                    "\n{:<12}  {:<24}  {:<24}  {}",
                    key.key_id(),
                    key.tenant,
                    time(key.created_at),
                    key.revoked_at.map(time).unwrap_or_else(|| "-".to_owned())
                ));
            }
            out::stdout(&table)?;
        }
        KeysCommand::Revoke { key_id, .. } => {
            let Some(record) = store.revoke_api_key(&key_id, chrono::Utc::now()).await? else {
                bail!("no key with id {key_id:?} (see hookline keys list)");
            };
            out::stdout(&format!(
                "revoked key {} of tenant {}",
                record.key_id(),
                record.tenant
            ))?;
        }
    }
    Ok(())
}

/// `hookline secrets rotate`: a new secret, printed once, the old one
/// signing alongside it for `overlap`.
pub async fn rotate_secret(store: &dyn KeyStore, tenant: &str, overlap: Duration) -> anyhow::Result<()> {
    let tenant = parse_tenant(tenant)?;
    let next = SigningSecret::generate(&mut rand::rng());
    let secrets = store::rotate_signing_secret(store, &tenant, next, chrono::Utc::now(), overlap).await?;
    out::stdout(&secrets.current.expose_secret())?;
    match secrets.previous_until {
        Some(until) => out::note(&format!(
            "tenant {tenant}'s callbacks are now signed with this secret, and with the previous one too until {}",
            time(until)
        )),
        None => out::note(&format!(
            "tenant {tenant}'s callbacks are now signed with this secret"
        )),
    }
    Ok(())
}

/// `hookline secrets new-key`: a new key in front of the key file's
/// (the file made if there is none). Processes started with the file from
/// then on seal with the new key; the older keys stay, so what they sealed
/// still opens.
pub fn new_key(path: &std::path::Path) -> anyhow::Result<()> {
    let fresh = seal::SystemFresh;
    let file = match seal::KeyFile::load(path) {
        Ok(file) => {
            let rotated = file.rotated(&fresh)?;
            rotated.save(path)?;
            rotated
        }
        Err(seal::SealError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            seal::KeyFile::generate(&fresh)?.save_new(path)?
        }
        Err(err) => return Err(crate::commands::usage(err)),
    };
    let ids = file.key_ids();
    out::note(&format!(
        "{} now seals with key {}{}; restart the processes that use it",
        path.display(),
        ids.first().copied().unwrap_or_default(),
        match ids.len() {
            1 => String::new(),
            n => format!(" ({} older kept to open what they sealed)", n - 1),
        }
    ));
    Ok(())
}

/// A tenant's signing secrets, created if it has none.
pub async fn tenant_secrets(store: &dyn KeyStore, tenant: &str) -> anyhow::Result<TenantSecrets> {
    let tenant = TenantId::parse(tenant)?;
    let (secrets, _) =
        store::ensure_signing_secrets(store, &tenant, SigningSecret::generate(&mut rand::rng())).await?;
    Ok(secrets)
}

/// The key `hookline dev` accepts: the one given (stored if new), or a new
/// one. Either way it belongs to tenant [`DEV_TENANT`].
pub async fn dev_key(store: &dyn KeyStore, given: Option<ApiKey>) -> anyhow::Result<ApiKey> {
    let key = given.unwrap_or_else(|| ApiKey::generate(&mut rand::rng()));
    let tenant = TenantId::parse(DEV_TENANT)?;
    match store.find_api_key(&key.hash()).await? {
        Some(record) if record.tenant == tenant && record.is_active() => Ok(key),
        Some(_) => bail!("that API key belongs to another tenant or was revoked"),
        None => {
            store_key(store, &key, tenant).await?;
            Ok(key)
        }
    }
}

async fn store_key(store: &dyn KeyStore, key: &ApiKey, tenant: TenantId) -> anyhow::Result<ApiKeyRecord> {
    let record = ApiKeyRecord {
        hash: key.hash(),
        tenant,
        created_at: chrono::Utc::now(),
        revoked_at: None,
    };
    match store.create_api_key(&record).await {
        Ok(()) => Ok(record),
        Err(StoreError::Conflict) => bail!("that key exists already"),
        Err(err) => Err(err).context("storing the key"),
    }
}

/// A tenant named on the command line; a bad name is a usage error.
fn parse_tenant(tenant: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(tenant)
        .with_context(|| format!("invalid tenant {tenant:?}"))
        .map_err(crate::commands::usage)
}

fn time(t: domain::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
