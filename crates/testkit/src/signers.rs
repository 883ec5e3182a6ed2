//! The providers' official webhook signers, from npm, pinned, so tests of
//! the inbound sources sign deliveries the way GitHub and Stripe do rather
//! than the way we read their documentation: `@octokit/webhooks-methods`
//! (`sign`, the `X-Hub-Signature-256` value) and `stripe`
//! (`webhooks.generateTestHeaderString`, the `Stripe-Signature` value).
//!
//! `signers/package.json` pins them and `signers/package-lock.json` locks
//! them; `signers/sign.mjs` calls them. On first use the three files are
//! written into a directory of the cache (`$HOOKLINE_CACHE_DIR`, else
//! `~/.cache/hookline`) named by a hash of their contents, so a new pin or a
//! changed script gets a new directory, and `npm ci` installs the lock
//! there, in place, while concurrent test processes take turns under a lock
//! file beside it (as [`crate::python`] does). A marker file written last
//! says the install finished; a directory without it is built again. Needs
//! `node` (20+) and `npm` on `PATH` and the npm registry the first time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sha2::Digest as _;

const PACKAGE_JSON: &str = include_str!("../signers/package.json");
const PACKAGE_LOCK: &str = include_str!("../signers/package-lock.json");
const SIGN_SCRIPT: &str = include_str!("../signers/sign.mjs");

/// Written into the directory once `npm ci` and a trial signature worked.
const MARKER: &str = ".hookline-installed";

/// The oldest Node.js both packages support (their `engines`).
const NODE_MAJOR: u32 = 20;

/// `sha256=<hex>`: the `X-Hub-Signature-256` GitHub sends with `payload`
/// signed with the webhook's `secret`, as `@octokit/webhooks-methods`
/// computes it.
///
/// Panics, saying what to install, when the signer cannot be installed or
/// run: a test that needs it is never skipped silently.
pub fn github_signature(secret: &str, payload: &str) -> String {
    sign(&serde_json::json!({
        "kind": "github",
        "secret": secret,
        "payload": payload,
    }))
}

/// `t=<timestamp_secs>,v1=<hex>`: the `Stripe-Signature` Stripe sends with
/// `payload` signed at `timestamp_secs` with the endpoint's signing secret
/// (`whsec_…`, used whole), as the `stripe` package's
/// `webhooks.generateTestHeaderString` computes it.
///
/// Panics like [`github_signature`], and for `timestamp_secs` 0, which the
/// package takes to mean now.
pub fn stripe_signature_header(secret: &str, payload: &str, timestamp_secs: i64) -> String {
    sign(&serde_json::json!({
        "kind": "stripe",
        "secret": secret,
        "payload": payload,
        "timestamp": timestamp_secs,
    }))
}

/// The directory the signers are installed in, installed on first use
/// (once per machine unless the cache is removed, once per process checked).
pub fn install() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| install_into(&dynamodb_local::cache_dir(), "node", "npm"))
        .clone()
}

fn sign(request: &serde_json::Value) -> String {
    let dir = match install() {
        Ok(dir) => dir,
        Err(message) => panic!("the official webhook signers are unavailable: {message}"),
    };
    run_script(&dir, "node", request).unwrap_or_else(|message| panic!("{message}"))
}

/// The install directory's name: the pins, the lock and the script, hashed.
fn cache_name() -> String {
    let mut hash = sha2::Sha256::new();
    for file in [PACKAGE_JSON, PACKAGE_LOCK, SIGN_SCRIPT] {
        hash.update((file.len() as u64).to_be_bytes());
        hash.update(file.as_bytes());
    }
    format!("npm-signers-{}", &hex(&hash.finalize())[..16])
}

fn install_into(cache: &Path, node: &str, npm: &str) -> Result<PathBuf, String> {
    let target = cache.join(cache_name());
    if installed(&target) {
        return Ok(target);
    }
    check_node(node)?;
    std::fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    // Held until this function returns; the OS drops it if we die.
    let lock_path = cache.join(format!("{}.lock", cache_name()));
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if installed(&target) {
        // Another process installed it while we waited.
        return Ok(target);
    }
    let _ = std::fs::remove_dir_all(&target);
    if let Err(message) = build(&target, node, npm) {
        let _ = std::fs::remove_dir_all(&target);
        return Err(message);
    }
    Ok(target)
}

fn installed(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
        && dir.join("sign.mjs").is_file()
        && dir
            .join("node_modules/@octokit/webhooks-methods/package.json")
            .is_file()
        && dir.join("node_modules/stripe/package.json").is_file()
}

fn check_node(node: &str) -> Result<(), String> {
    let install = format!(
        "the tests need Node.js {NODE_MAJOR} or later with npm on PATH \
         (for example from https://nodejs.org or `apt-get install nodejs npm`)"
    );
    let out = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{node}` was not found ({e}): {install}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if out.status.success() && major >= NODE_MAJOR => Ok(()),
        _ => Err(format!("`{node} --version` says {version:?}: {install}")),
    }
}

fn build(dir: &Path, node: &str, npm: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (name, text) in [
        ("package.json", PACKAGE_JSON),
        ("package-lock.json", PACKAGE_LOCK),
        ("sign.mjs", SIGN_SCRIPT),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let ci = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--update-notifier=false",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{npm} ci` in {}: {e}", dir.display()))?;
    if !ci.status.success() {
        return Err(format!(
            "`npm ci` in {} failed (the npm registry must be reachable the first time): {}",
            dir.display(),
            String::from_utf8_lossy(&ci.stderr).trim()
        ));
    }
    // A trial signature, so a broken install is never marked finished.
    let trial = serde_json::json!({"kind": "github", "secret": "s", "payload": "p"});
    let header = run_script(dir, node, &trial)?;
    if !header.starts_with("sha256=") {
        return Err(format!("the trial signature in {} was {header:?}", dir.display()));
    }
    let marker = dir.join(MARKER);
    std::fs::write(&marker, "").map_err(|e| format!("writing {}: {e}", marker.display()))
}

/// Runs `node sign.mjs` in `dir` with `request` on stdin (so no secret or
/// payload passes through the command line) and returns what it printed.
fn run_script(dir: &Path, node: &str, request: &serde_json::Value) -> Result<String, String> {
    let mut child = Command::new(node)
        .arg("sign.mjs")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running `{node} sign.mjs` in {}: {e}", dir.display()))?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for `{node} sign.mjs`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{node} sign.mjs` in {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    written.map_err(|e| format!("writing to `{node} sign.mjs`: {e}"))?;
    String::from_utf8(out.stdout)
        .map(|header| header.trim().to_owned())
        .map_err(|e| format!("`{node} sign.mjs` printed something other than UTF-8: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use hmac::{KeyInit as _, Mac as _};

    fn hmac_sha256_hex(key: &str, message: &str) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A JSON body that any parse-and-serialize round trip would change
    /// (spacing, key order, `1.50`, escapes), with text beyond ASCII.
    const BODY: &str =
        "{\"zeta\": 1.50,  \"alpha\":\"caf\u{e9} \u{2713} \\u00e9 \\\"q\\\"\\n\",\n\"emoji\":\"\u{1f980}\"}";

    /// GitHub's documented example
    /// (docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
    #[test]
    fn github_signature_matches_the_documented_example() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            format!(
                "sha256={}",
                hmac_sha256_hex("It's a Secret to Everybody", "Hello, World!")
            ),
            expected
        );
        assert_eq!(
            github_signature("It's a Secret to Everybody", "Hello, World!"),
            expected
        );
    }

    #[test]
    fn github_signature_signs_the_exact_bytes_given() {
        let secret = "s3cr\u{e9}t";
        assert_eq!(
            github_signature(secret, BODY),
            format!("sha256={}", hmac_sha256_hex(secret, BODY))
        );
    }

    #[test]
    fn stripe_signature_header_is_t_and_v1_over_the_timestamp_and_payload() {
        let secret = "whsec_test_9b2c1f0e5d4a";
        let t = 1_733_097_600;
        assert_eq!(
            stripe_signature_header(secret, BODY, t),
            format!("t={t},v1={}", hmac_sha256_hex(secret, &format!("{t}.{BODY}")))
        );
        assert_eq!(
            stripe_signature_header(secret, "", 1),
            format!("t=1,v1={}", hmac_sha256_hex(secret, "1."))
        );
    }

    /// `generateTestHeaderString` reads a timestamp of 0 as now; the script
    /// refuses rather than sign another timestamp than the one asked for.
    #[test]
    #[should_panic(expected = "it reads 0 as now")]
    fn stripe_signature_header_refuses_timestamp_zero() {
        stripe_signature_header("whsec_x", "{}", 0);
    }

    #[test]
    fn a_missing_node_says_what_to_install() {
        let cache = tempfile::tempdir().expect("temp dir");
        let err = install_into(cache.path(), "/nonexistent/node", "npm").expect_err("no node");
        assert!(err.contains("Node.js 20 or later with npm"), "{err}");
        assert!(!cache.path().join(cache_name()).exists());
    }

    /// CI starts with an empty cache and many test processes: racers on one
    /// fresh cache install once, in turn, and all get a working signer.
    #[test]
    fn racers_on_an_empty_cache_share_one_install() {
        let cache = tempfile::tempdir().expect("temp dir");
        let dirs: Vec<PathBuf> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| install_into(cache.path(), "node", "npm")))
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("racer").expect("install"))
                .collect()
        });
        assert!(dirs.iter().all(|d| *d == dirs[0]), "{dirs:?}");
        let header = run_script(
            &dirs[0],
            "node",
            &serde_json::json!({"kind": "github", "secret": "k", "payload": BODY}),
        )
        .expect("sign");
        assert_eq!(header, format!("sha256={}", hmac_sha256_hex("k", BODY)));

        // One left unfinished (no marker) is installed again, not trusted.
        std::fs::remove_file(dirs[0].join(MARKER)).expect("remove the marker");
        assert_eq!(
            install_into(cache.path(), "node", "npm").expect("reinstall"),
            dirs[0]
        );
        assert!(dirs[0].join(MARKER).is_file());
    }
}
