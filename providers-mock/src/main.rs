//! `providers-mock`: the mock providers and callback sink as a standalone server.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "Mock billing providers and a callback sink for hookline")]
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
    println!("providers-mock listening on http://{}", listener.local_addr()?);
    axum::serve(listener, providers_mock::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}
