//! `hookline healthcheck`: a container's HEALTHCHECK without curl in the
//! image. One GET of `/healthz` (the process is up; `/readyz` would restart
//! a container for a store's blip), exit 0 on a 2xx and 1 otherwise, with
//! one line saying why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, bail};

use crate::cli::HealthcheckArgs;
use crate::commands::usage;
use crate::out;

pub async fn check(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = match &args.url {
        Some(url) => url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| usage(anyhow::anyhow!("--url: not an http(s) URL")))?,
        None => healthz_on(&args.listen)?,
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let status = client
        .get(url.clone())
        .send()
        .await
        .map_err(|err| anyhow::anyhow!("{url}: no answer: {}", causes(&err.without_url())))?
        .status();
    if !status.is_success() {
        bail!("{url}: answered {status}");
    }
    out::show(&format!("{url}: {status}"));
    Ok(())
}

/// `/healthz` on the address `serve --listen` binds: an unspecified host
/// (`0.0.0.0`, `[::]`) is asked on loopback, where the process also listens.
fn healthz_on(listen: &str) -> anyhow::Result<url::Url> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        usage(anyhow::anyhow!(
            "--listen {listen:?} is not an IP:PORT address; give --url instead"
        ))
    })?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    url::Url::parse(&format!("http://{}/healthz", SocketAddr::new(ip, addr.port())))
        .context("the /healthz URL")
}

/// An error and its causes on one line (reqwest's own says only "error
/// sending request"; the cause says "connection refused").
fn causes(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_asked_on_loopback() {
        let at = |listen: &str| healthz_on(listen).expect(listen).to_string();
        assert_eq!(at("0.0.0.0:3000"), "http://127.0.0.1:3000/healthz");
        assert_eq!(at("[::]:3000"), "http://[::1]:3000/healthz");
        assert_eq!(at("10.1.2.3:8080"), "http://10.1.2.3:8080/healthz");
        assert!(healthz_on("localhost:3000").is_err());
    }
}
