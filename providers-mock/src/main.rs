//! `providers-mock`: the mock providers and callback sink as a standalone server.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Mock billing providers and a callback sink for hookline",
    after_help = "Environment:\n  MOCK_SIGNING_SECRETS  comma-separated whsec_ secrets the sink verifies callback \
                  signatures with\n                        (read from the environment only, so they stay out of \
                  `ps`)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PROVIDERS_MOCK_LISTEN", default_value = "127.0.0.1:4000")]
    listen: String,
    /// Seed for probabilistic faults, for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use anyhow::Context as _;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let state = args
        .seed
        .map(providers_mock::MockState::with_seed)
        .unwrap_or_default();
    let secrets = signing_secrets_from_env()?;
    let checking = !secrets.is_empty();
    state.set_signing_secrets(secrets);
    println!(
        "providers-mock listening on http://{} (callback signatures {})",
        listener.local_addr()?,
        if checking { "verified" } else { "not checked" }
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    server::serve(
        listener,
        providers_mock::router(state),
        server::Limits::default(),
        shutdown,
    )
    .await
    .context("serving")
}

/// `MOCK_SIGNING_SECRETS`, comma-separated. Errors name the position of a
/// bad secret, never its text.
fn signing_secrets_from_env() -> anyhow::Result<Vec<domain::SigningSecret>> {
    let Some(value) = std::env::var_os("MOCK_SIGNING_SECRETS") else {
        return Ok(Vec::new());
    };
    let value = value
        .into_string()
        .map_err(|_| anyhow::anyhow!("MOCK_SIGNING_SECRETS is not UTF-8"))?;
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, secret)| {
            secret
                .parse()
                .map_err(|e| anyhow::anyhow!("MOCK_SIGNING_SECRETS, secret {}: {e}", i + 1))
        })
        .collect()
}
