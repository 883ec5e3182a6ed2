//! The conformance suite's part for sealed secrets (SPEC section 13: no
//! stored item holds a plaintext secret; see [`crate::sealing`]). A
//! backend's test hands these checks what its store holds, read from under
//! the store (the SQLite file and its WAL, a Scan of the DynamoDB table),
//! so the same assertions hold on every backend:
//!
//! - [`secrets_are_stored_sealed`] checks that no secret written through
//!   the store is found in what it holds, and that `"sealed"` is;
//! - [`sealed_secrets_open_only_with_the_same_keys`] that a store over the
//!   same data with other keys reads a sealed record as corrupt, naming no
//!   secret;
//! - [`plaintext_records_are_read_and_sealed_by_their_next_write`] that
//!   records an earlier release stored in the clear read as they are, and
//!   that their next write seals them.

use std::sync::Arc;
use std::time::Duration;

use domain::{
    Credential, Endpoint, EndpointAuth, OAuth2Grant, SigningSecret, Source, TenantId, TenantSecrets, Verify,
};

use super::at;
use super::events::endpoint;
use super::sources::source;
use crate::{Store, StoreError};

/// The member a sealed record holds its secrets in, as stored text.
const SEALED: &str = "\"sealed\"";

// Secrets distinctive enough that finding one in what a store holds means
// it was stored in the clear. The `whsec_` ones are 32 bytes of ASCII
// text, base64.
const ENDPOINT_SECRET: &str = "whsec_aG9va2xpbmUgc2VhbGluZzogZW5kcG9pbnQga2V5IDE=";
const ENDPOINT_ROTATED: &str = "whsec_aG9va2xpbmUgc2VhbGluZzogZW5kcG9pbnQga2V5IDI=";
const BASIC_PASSWORD: &str = "basic-password-3f9c2a71";
const OAUTH2_CLIENT_SECRET: &str = "oauth2-client-secret-81d0e6b4";
const HEADER_VALUE: &str = "header-auth-value-5c7e19a2";
const GITHUB_SECRET: &str = "github-verification-secret-0a4d";
const GITHUB_ROTATED: &str = "github-verification-rotated-77b3";
const STANDARD_WEBHOOKS_SECRET: &str = "whsec_aG9va2xpbmUgc2VhbGluZzogc291cmNlIHN3aCBrZXk=";
const TENANT_FIRST: &str = "whsec_aG9va2xpbmUgc2VhbGluZzogdGVuYW50IGZpcnN0ICA=";
const TENANT_NEXT: &str = "whsec_aG9va2xpbmUgc2VhbGluZzogdGVuYW50IG5leHQgICA=";

/// The shortest secret searched for in what a store holds: a shorter one
/// could turn up by chance in a sealed value's base64.
pub const SHORTEST_SEARCHED: usize = 8;

fn signing_secret(text: &str) -> SigningSecret {
    text.parse().expect("a valid signing secret")
}

/// Every secret of a tenant's signing secrets record, as its text.
pub fn secrets_of_signing(secrets: &TenantSecrets) -> Vec<String> {
    std::iter::once(&secrets.current)
        .chain(&secrets.previous)
        .map(SigningSecret::expose_secret)
        .collect()
}

/// Every secret an endpoint's record holds: its signing secrets and its
/// auth's credential.
pub fn secrets_of_endpoint(endpoint: &Endpoint) -> Vec<String> {
    let mut secrets = secrets_of_signing(&endpoint.secrets);
    let credential = match &endpoint.auth {
        None => None,
        Some(EndpointAuth::Basic { password, .. }) => Some(password),
        Some(EndpointAuth::Bearer { token }) => Some(token),
        Some(EndpointAuth::Header { value, .. }) => Some(value),
        Some(EndpointAuth::OAuth2(grant)) => Some(&grant.client_secret),
    };
    secrets.extend(credential.map(|c| c.expose().to_owned()));
    secrets
}

/// The secret a source's verification holds.
pub fn secrets_of_source(source: &Source) -> Vec<String> {
    let secret = match &source.verify {
        Verify::Hmac { secret, .. }
        | Verify::StandardWebhooks { secret }
        | Verify::Github { secret }
        | Verify::Stripe { secret, .. }
        | Verify::Shopify { secret } => secret,
        Verify::Basic { password, .. } => password,
        Verify::Header { value, .. } => value,
    };
    vec![secret.expose().to_owned()]
}

/// What to search for: each secret of at least [`SHORTEST_SEARCHED`]
/// characters whole, and a `whsec_` secret's base64 part alone as well.
fn needles(secrets: &[String]) -> Vec<String> {
    let mut needles = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= SHORTEST_SEARCHED) {
        needles.push(secret.clone());
        if let Some(key) = secret
            .strip_prefix("whsec_")
            .filter(|k| k.len() >= SHORTEST_SEARCHED)
        {
            needles.push(key.to_owned());
        }
    }
    needles.sort();
    needles.dedup();
    needles
}

fn holds(stored: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty() && stored.windows(needle.len()).any(|w| w == needle)
}

/// None of `secrets` is in `stored`, and a sealed record is.
fn assert_none_in_the_clear(stored: &[u8], secrets: &[String], when: &str) {
    let needles = needles(secrets);
    assert!(!needles.is_empty(), "{when}: no secret to look for");
    let found: Vec<&String> = needles.iter().filter(|n| holds(stored, n)).collect();
    assert!(
        found.is_empty(),
        "{when}: {} of {} secrets are stored in the clear: {found:?}",
        found.len(),
        needles.len()
    );
    assert!(holds(stored, SEALED), "{when}: no sealed record is stored");
}

/// Every one of `secrets` is in `stored`: what the store holds is read
/// whole, so their absence later means something.
fn assert_all_in_the_clear(stored: &[u8], secrets: &[String], when: &str) {
    let needles = needles(secrets);
    assert!(!needles.is_empty(), "{when}: no secret to look for");
    let missing: Vec<&String> = needles.iter().filter(|n| !holds(stored, n)).collect();
    assert!(
        missing.is_empty(),
        "{when}: {} of {} plaintext secrets are not found in what the store holds \
         (is all of it read?): {missing:?}",
        missing.len(),
        needles.len()
    );
}

/// The suite's endpoints: one with basic auth and a distinctive signing
/// secret, one with an OAuth2 grant.
fn endpoints() -> (Endpoint, Endpoint) {
    let mut basic = endpoint("acme", 71, None, &["*"], at(0));
    basic.description = "sealing: basic".to_owned();
    basic.secrets = TenantSecrets::new(signing_secret(ENDPOINT_SECRET));
    basic.auth = Some(EndpointAuth::Basic {
        username: "hookline".to_owned(),
        password: Credential::new(BASIC_PASSWORD),
    });
    let mut oauth2 = endpoint("acme", 72, Some("company-42"), &["invoice.paid"], at(0));
    oauth2.description = "sealing: oauth2".to_owned();
    oauth2.auth = Some(EndpointAuth::OAuth2(OAuth2Grant {
        token_url: url::Url::parse("https://auth.example/oauth/token").expect("valid"),
        client_id: "hookline-client".to_owned(),
        client_secret: Credential::new(OAUTH2_CLIENT_SECRET),
        scope: Some("webhooks:write".to_owned()),
        audience: None,
    }));
    (basic, oauth2)
}

/// The suite's sources: GitHub and Standard Webhooks, each with a
/// distinctive secret.
fn sources() -> (Source, Source) {
    let mut github = source("acme", 73, "sealing: github", at(0));
    github.verify = Verify::github(GITHUB_SECRET).expect("valid");
    let mut standard = source("acme", 74, "sealing: standard webhooks", at(0));
    standard.verify = Verify::standard_webhooks(STANDARD_WEBHOOKS_SECRET).expect("valid");
    (github, standard)
}

async fn read_endpoint(store: &dyn Store, endpoint: &Endpoint) -> (Endpoint, u64) {
    store
        .get_endpoint(&endpoint.tenant, endpoint.id)
        .await
        .expect("get endpoint")
        .unwrap_or_else(|| panic!("endpoint {} exists", endpoint.id))
}

async fn read_source(store: &dyn Store, source: &Source) -> (Source, u64) {
    store
        .get_source(source.id)
        .await
        .expect("get source")
        .unwrap_or_else(|| panic!("source {} exists", source.id))
}

/// Every endpoint of the tenant, by id.
async fn tenant_endpoints(store: &dyn Store, tenant: &TenantId) -> Vec<Endpoint> {
    let mut all = store.tenant_endpoints(tenant).await.expect("tenant endpoints");
    all.sort_by_key(|e| e.id);
    all
}

/// Every source of the tenant (one page), by id.
async fn tenant_sources(store: &dyn Store, tenant: &TenantId) -> Vec<Source> {
    let mut all = store
        .list_sources(tenant, None, 100)
        .await
        .expect("list sources")
        .sources;
    all.sort_by_key(|s| s.id);
    all
}

/// Endpoints, sources and a tenant's signing secrets, created and then
/// rewritten through the store with distinctive secrets, read back as
/// written; `stored_text` (everything the store holds, read from under it)
/// holds none of the secrets and holds sealed records.
pub async fn secrets_are_stored_sealed(store: Arc<dyn Store>, stored_text: impl AsyncFn() -> Vec<u8>) {
    let acme = TenantId::new("acme");
    let mut written: Vec<String> = Vec::new();

    let (basic, oauth2) = endpoints();
    for e in [&basic, &oauth2] {
        store.create_endpoint(e).await.expect("create endpoint");
        assert_eq!(
            read_endpoint(&*store, e).await,
            (e.clone(), 1),
            "{}",
            e.description
        );
        written.extend(secrets_of_endpoint(e));
    }
    // Rewritten: basic's signing secrets rotated, oauth2's auth a header.
    let mut rotated = basic.clone();
    rotated.secrets = basic.secrets.rotated(
        signing_secret(ENDPOINT_ROTATED),
        at(10),
        Duration::from_secs(86_400),
    );
    rotated.updated_at = at(10);
    let mut header = oauth2.clone();
    header.auth = Some(EndpointAuth::Header {
        name: "x-api-key".to_owned(),
        value: Credential::new(HEADER_VALUE),
    });
    header.updated_at = at(10);
    for e in [&rotated, &header] {
        assert!(
            store.update_endpoint(e, 1).await.expect("update endpoint"),
            "{}: updated at the version read",
            e.description
        );
        assert_eq!(
            read_endpoint(&*store, e).await,
            (e.clone(), 2),
            "{}",
            e.description
        );
        written.extend(secrets_of_endpoint(e));
    }
    assert_eq!(
        tenant_endpoints(&*store, &acme).await,
        {
            let mut both = vec![rotated.clone(), header.clone()];
            both.sort_by_key(|e| e.id);
            both
        },
        "the tenant's endpoints read back as written"
    );

    let (github, standard) = sources();
    for s in [&github, &standard] {
        store.create_source(s).await.expect("create source");
        assert_eq!(read_source(&*store, s).await, (s.clone(), 1), "{}", s.name);
        written.extend(secrets_of_source(s));
    }
    let (_, version) = read_source(&*store, &github).await;
    let mut github_rotated = github.clone();
    github_rotated.verify = Verify::github(GITHUB_ROTATED).expect("valid");
    github_rotated.updated_at = at(10);
    assert!(
        store
            .update_source(&github_rotated, version)
            .await
            .expect("update source")
    );
    let (read, moved_on) = read_source(&*store, &github).await;
    assert_eq!(read, github_rotated);
    assert!(moved_on > version);
    written.extend(secrets_of_source(&github_rotated));
    assert_eq!(
        tenant_sources(&*store, &acme).await,
        {
            let mut both = vec![github_rotated.clone(), standard.clone()];
            both.sort_by_key(|s| s.id);
            both
        },
        "the tenant's sources read back as written"
    );

    // A tenant's signing secrets, created and then rotated against the
    // version read.
    let first = TenantSecrets::new(signing_secret(TENANT_FIRST));
    assert!(
        store
            .put_signing_secrets(&acme, &first, None)
            .await
            .expect("put signing secrets")
    );
    let (read, version) = store
        .signing_secrets(&acme)
        .await
        .expect("read signing secrets")
        .expect("they exist");
    assert_eq!(read, first);
    let next = first.rotated(signing_secret(TENANT_NEXT), at(20), Duration::from_secs(3600));
    assert!(
        store
            .put_signing_secrets(&acme, &next, Some(version))
            .await
            .expect("rotate signing secrets")
    );
    assert_eq!(
        store.signing_secrets(&acme).await.expect("read signing secrets"),
        Some((next.clone(), version + 1)),
        "rotated: the new one current, the first one previous"
    );
    written.extend(secrets_of_signing(&next));

    for secret in [
        ENDPOINT_SECRET,
        ENDPOINT_ROTATED,
        BASIC_PASSWORD,
        OAUTH2_CLIENT_SECRET,
        HEADER_VALUE,
        GITHUB_SECRET,
        GITHUB_ROTATED,
        STANDARD_WEBHOOKS_SECRET,
        TENANT_FIRST,
        TENANT_NEXT,
    ] {
        assert!(written.iter().any(|w| w == secret), "{secret} was written");
    }
    let stored = stored_text().await;
    assert_none_in_the_clear(&stored, &written, "after the writes");
}

/// Records sealed by `store`, read by `same_keys` (another store over the
/// same data, with the same sealer) as written, and by `other_keys` (one
/// with a sealer of other keys) as [`StoreError::Corrupt`], whose message
/// names no secret.
pub async fn sealed_secrets_open_only_with_the_same_keys(
    store: Arc<dyn Store>,
    same_keys: Arc<dyn Store>,
    other_keys: Arc<dyn Store>,
) {
    let acme = TenantId::new("acme");
    let (basic, _) = endpoints();
    let (github, _) = sources();
    let secrets = TenantSecrets::new(signing_secret(TENANT_FIRST));
    store.create_endpoint(&basic).await.expect("create endpoint");
    store.create_source(&github).await.expect("create source");
    assert!(
        store
            .put_signing_secrets(&acme, &secrets, None)
            .await
            .expect("put signing secrets")
    );

    assert_eq!(read_endpoint(&*same_keys, &basic).await, (basic.clone(), 1));
    assert_eq!(
        tenant_endpoints(&*same_keys, &acme).await,
        std::slice::from_ref(&basic)
    );
    assert_eq!(read_source(&*same_keys, &github).await, (github.clone(), 1));
    assert_eq!(
        tenant_sources(&*same_keys, &acme).await,
        std::slice::from_ref(&github)
    );
    assert_eq!(
        same_keys.signing_secrets(&acme).await.expect("read"),
        Some((secrets.clone(), 1))
    );

    let mut secret_texts = secrets_of_endpoint(&basic);
    secret_texts.extend(secrets_of_source(&github));
    secret_texts.extend(secrets_of_signing(&secrets));
    let needles = needles(&secret_texts);
    let corrupt = |what: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::Corrupt(message)) => {
            let named: Vec<&String> = needles.iter().filter(|n| message.contains(n.as_str())).collect();
            assert!(
                named.is_empty(),
                "{what}: the error names secrets {named:?}: {message}"
            );
        }
        other => panic!("{what} under other keys: expected Corrupt, got {other:?}"),
    };
    corrupt(
        "get_endpoint",
        other_keys.get_endpoint(&acme, basic.id).await.map(drop),
    );
    corrupt(
        "tenant_endpoints",
        other_keys.tenant_endpoints(&acme).await.map(drop),
    );
    corrupt("get_source", other_keys.get_source(github.id).await.map(drop));
    corrupt(
        "list_sources",
        other_keys.list_sources(&acme, None, 10).await.map(drop),
    );
    corrupt(
        "signing_secrets",
        other_keys.signing_secrets(&acme).await.map(drop),
    );

    // The records are intact: the store's own keys still open them.
    assert_eq!(read_endpoint(&*store, &basic).await, (basic, 1));
    assert_eq!(read_source(&*store, &github).await, (github, 1));
    assert_eq!(
        store.signing_secrets(&acme).await.expect("read"),
        Some((secrets, 1))
    );
}

/// A record as a release before secrets were sealed stored it: its text,
/// secrets in the clear, for the backend's test to write raw, at version 1,
/// with whatever else that release stored beside it (keys, columns, a
/// source's listing item).
#[allow(
    clippy::large_enum_variant,
    reason = "test data: a few dozen records, each moved once"
)]
#[derive(Debug, Clone)]
pub enum Plaintext {
    Endpoint { endpoint: Endpoint, text: String },
    Source { source: Source, text: String },
    SigningSecrets { tenant: TenantId, text: String },
}

/// The plaintext records of endpoint format `version`: every golden
/// endpoint that version has (`domain::fixtures`); at the newest version
/// also the suite's own endpoints as the writer encodes them, the golden
/// sources and the suite's, and a tenant's signing secrets, rotated.
fn plaintext_records(version: u64) -> Vec<Plaintext> {
    let mut records = Vec::new();
    for (case, endpoint) in domain::fixtures::endpoint_cases() {
        if let Some(text) = domain::fixtures::record_of("endpoints", version, case) {
            records.push(Plaintext::Endpoint { endpoint, text });
        }
    }
    if version != domain::record::endpoint::ENDPOINT_VERSION {
        return records;
    }
    let (basic, oauth2) = endpoints();
    for endpoint in [basic, oauth2] {
        let text = domain::record::endpoint::encode_endpoint(&endpoint);
        records.push(Plaintext::Endpoint { endpoint, text });
    }
    let (github, standard) = sources();
    for source in [github, standard] {
        let text = domain::record::source::encode_source(&source);
        records.push(Plaintext::Source { source, text });
    }
    for (case, source) in domain::fixtures::source_cases() {
        for v in 1..=domain::record::source::SOURCE_VERSION {
            if let Some(text) = domain::fixtures::record_of("sources", v, case) {
                records.push(Plaintext::Source {
                    source: source.clone(),
                    text,
                });
            }
        }
    }
    let secrets = TenantSecrets::new(signing_secret(TENANT_FIRST)).rotated(
        signing_secret(TENANT_NEXT),
        at(20),
        Duration::from_secs(3600),
    );
    records.push(Plaintext::SigningSecrets {
        tenant: TenantId::new("acme"),
        text: serde_json::to_string(&secrets).expect("serializes"),
    });
    records
}

/// Plaintext records of endpoint format `version` (on a fresh store per
/// version: the golden endpoints of two versions share ids), written raw
/// by `insert` as an earlier release stored them, read back through the
/// store as the records they are; then each written once through the store
/// (unchanged, at the version read): read back the same, and
/// `stored_text` holds none of their secrets any more, but sealed records.
pub async fn plaintext_records_are_read_and_sealed_by_their_next_write(
    store: Arc<dyn Store>,
    version: u64,
    insert: impl AsyncFn(Plaintext),
    stored_text: impl AsyncFn() -> Vec<u8>,
) {
    let records = plaintext_records(version);
    assert!(!records.is_empty(), "endpoint format v{version} has records");
    let mut secrets = Vec::new();
    for record in &records {
        let (text, of_record) = match record {
            Plaintext::Endpoint { endpoint, text } => (text, secrets_of_endpoint(endpoint)),
            Plaintext::Source { source, text } => (text, secrets_of_source(source)),
            Plaintext::SigningSecrets { text, .. } => {
                let parsed: TenantSecrets = serde_json::from_str(text).expect("signing secrets");
                (text, secrets_of_signing(&parsed))
            }
        };
        assert!(!text.contains(SEALED), "v{version}: a plaintext record");
        secrets.extend(of_record);
        insert(record.clone()).await;
    }
    // What was inserted is there, in the clear: the search below would
    // find it if a write left it so.
    assert_all_in_the_clear(
        &stored_text().await,
        &secrets,
        &format!("v{version}, as inserted"),
    );

    for record in &records {
        match record {
            Plaintext::Endpoint { endpoint, .. } => {
                assert_eq!(
                    read_endpoint(&*store, endpoint).await,
                    (endpoint.clone(), 1),
                    "v{version}: endpoint {} reads as it was stored",
                    endpoint.id
                );
                assert!(
                    store.update_endpoint(endpoint, 1).await.expect("update endpoint"),
                    "v{version}: endpoint {} written at its version",
                    endpoint.id
                );
                assert_eq!(
                    read_endpoint(&*store, endpoint).await,
                    (endpoint.clone(), 2),
                    "v{version}: endpoint {} reads the same once sealed",
                    endpoint.id
                );
            }
            Plaintext::Source { source, .. } => {
                assert_eq!(
                    read_source(&*store, source).await,
                    (source.clone(), 1),
                    "v{version}: source {} reads as it was stored",
                    source.name
                );
                assert!(
                    store.update_source(source, 1).await.expect("update source"),
                    "v{version}: source {} written at its version",
                    source.name
                );
                assert_eq!(
                    read_source(&*store, source).await,
                    (source.clone(), 2),
                    "v{version}: source {} reads the same once sealed",
                    source.name
                );
            }
            Plaintext::SigningSecrets { tenant, text } => {
                let secrets: TenantSecrets = serde_json::from_str(text).expect("signing secrets");
                assert_eq!(
                    store.signing_secrets(tenant).await.expect("read signing secrets"),
                    Some((secrets.clone(), 1)),
                    "v{version}: signing secrets read as they were stored"
                );
                assert!(
                    store
                        .put_signing_secrets(tenant, &secrets, Some(1))
                        .await
                        .expect("put signing secrets"),
                    "v{version}: signing secrets written at their version"
                );
                assert_eq!(
                    store.signing_secrets(tenant).await.expect("read signing secrets"),
                    Some((secrets, 2)),
                    "v{version}: signing secrets read the same once sealed"
                );
            }
        }
    }
    assert_none_in_the_clear(
        &stored_text().await,
        &secrets,
        &format!("v{version}, after the next write of each"),
    );
}
