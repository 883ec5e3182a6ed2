//! The SSRF guard (SPEC section 2). hookline POSTs to URLs strangers give
//! it, so it refuses addresses that reach inside the network it runs in:
//! loopback, private, link-local, carrier-grade NAT, multicast, unspecified,
//! IPv4-mapped IPv6 and cloud-metadata addresses.
//!
//! The check runs twice: at intake on the URL (a literal address in any
//! notation the URL parser accepts, or every address its host name resolves
//! to), and at connect time through [`GuardedResolver`], the resolver the
//! callback client uses, so a name that re-resolves to an inside address
//! after intake (DNS rebinding) still never gets a connection. An allow-list
//! of networks opts addresses back in (`hookline dev` allows loopback).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    CloudMetadata,
    Multicast,
    Broadcast,
    /// Special-purpose ranges that are not meant to be reached (IETF
    /// protocol assignments, benchmarking, the old class E).
    Reserved,
    Ipv4Mapped,
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedAddressSpace => "carrier-grade NAT",
            Self::CloudMetadata => "cloud metadata",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Ipv4Mapped => "IPv4-mapped IPv6",
        })
    }
}

/// Well-known instance metadata endpoints outside the ranges below (AWS,
/// GCP and Azure's link-local one is covered by link-local as well).
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    // Alibaba Cloud
    Ipv4Addr::new(100, 100, 100, 200),
    // Azure's WireServer
    Ipv4Addr::new(168, 63, 129, 16),
];

/// AWS's IMDS on IPv6 (Nitro).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Whether an address is one hookline must not call, and why.
pub fn classify(ip: IpAddr) -> Option<Reserved> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Reserved> {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Some(Reserved::CloudMetadata);
    }
    Some(match (a, b, c) {
        (0, _, _) => Reserved::Unspecified,
        (127, _, _) => Reserved::Loopback,
        (10, _, _) | (192, 168, _) => Reserved::Private,
        (172, 16..=31, _) => Reserved::Private,
        (169, 254, _) => Reserved::LinkLocal,
        (100, 64..=127, _) => Reserved::SharedAddressSpace,
        (224..=239, _, _) => Reserved::Multicast,
        (255, 255, 255) if ip == Ipv4Addr::BROADCAST => Reserved::Broadcast,
        (240..=255, _, _) => Reserved::Reserved,
        (192, 0, 0) | (198, 18..=19, _) => Reserved::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Reserved> {
    if ip == METADATA_V6 {
        return Some(Reserved::CloudMetadata);
    }
    if ip.is_unspecified() {
        return Some(Reserved::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Reserved::Loopback);
    }
    let segments = ip.segments();
    Some(match segments {
        // ::ffff:a.b.c.d, and the deprecated ::a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Reserved::Ipv4Mapped,
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address
        // that a gateway will connect to.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(v4_from(hi, lo)),
        [0x2002, hi, lo, ..] => return classify_v4(v4_from(hi, lo)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Reserved::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => Reserved::LinkLocal,
        // The deprecated site-local range.
        [first, ..] if first & 0xffc0 == 0xfec0 => Reserved::Private,
        [first, ..] if first & 0xff00 == 0xff00 => Reserved::Multicast,
        _ => return None,
    })
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// A refused callback target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("{host} is a {reason} address ({ip}), which callbacks may not reach")]
    Address {
        host: String,
        ip: IpAddr,
        reason: Reserved,
    },
    #[error("the URL has no host")]
    NoHost,
}

/// Which addresses callbacks may reach: everything but [`classify`]'s,
/// plus the networks allowed back in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allowed: Vec<IpNet>,
}

impl NetPolicy {
    /// Nothing reserved is allowed: production.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Allows `networks` back in, such as a VPC whose receivers are trusted.
    pub fn allowing(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allowed: networks.into_iter().collect(),
        }
    }

    /// Loopback allowed, for `hookline dev` and tests on one machine.
    pub fn loopback_allowed() -> Self {
        Self::allowing([
            IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
            IpNet::V6(ipnet::Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        ])
    }

    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether `ip` may be called; `host` names it in the error.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        // An allowed IPv4 network covers the same address written as
        // IPv4-mapped IPv6.
        let canonical = ip.to_canonical();
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        match classify(ip) {
            Some(reason) => Err(Blocked::Address {
                host: host.to_owned(),
                ip,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The check of a URL whose host is an address literal; a host name is
    /// left to resolution ([`NetPolicy::check_url`] or [`GuardedResolver`]).
    pub fn check_literal(&self, url: &Url) -> Result<(), Blocked> {
        match url.host() {
            None => Err(Blocked::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
        }
    }

    /// The intake's check: an address literal, or every address the host
    /// name resolves to now. `localhost` names are loopback without asking
    /// DNS (RFC 6761). A name that does not resolve passes: there is nothing
    /// to reach yet, and the connect-time check decides when there is.
    pub async fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        self.check_literal(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let name = name.trim_end_matches('.');
        if is_localhost(name) {
            return self.check_ip(name, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::net::lookup_host((name, port)).await {
            Ok(addresses) => {
                for address in addresses {
                    self.check_ip(name, address.ip())?;
                }
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }
}

fn is_localhost(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

/// The callback client's resolver: resolves like the system does and
/// hands the client only the addresses the policy allows, so a connection
/// to a refused address is never opened, whatever DNS answers by then.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<NetPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let name = name.as_str().trim_end_matches('.').to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = if is_localhost(&name) {
                vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))]
            } else {
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect()
            };
            let mut refused = None;
            let mut allowed = Vec::with_capacity(found.len());
            for address in found {
                match policy.check_ip(&name, address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(blocked) => refused = refused.or(Some(blocked)),
                }
            }
            match (allowed.is_empty(), refused) {
                (true, Some(blocked)) => Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid URL")
    }

    /// The issue's table, in the notations a URL may carry.
    const REFUSED: [&str; 14] = [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://localhost:8080/",
    ];

    #[tokio::test]
    async fn the_issues_table_is_refused() {
        let strict = NetPolicy::strict();
        for target in REFUSED {
            let err = strict.check_url(&url(target)).await.expect_err(target);
            assert!(matches!(err, Blocked::Address { .. }), "{target}: {err}");
        }
    }

    #[tokio::test]
    async fn each_refusal_says_why() {
        let strict = NetPolicy::strict();
        for (target, reason) in [
            ("http://0x7f000001/", Reserved::Loopback),
            ("http://[::ffff:8.8.8.8]/", Reserved::Ipv4Mapped),
            ("http://169.254.169.254/", Reserved::CloudMetadata),
            ("http://[fd00:ec2::254]/", Reserved::CloudMetadata),
            ("http://100.64.0.1/", Reserved::SharedAddressSpace),
            ("http://224.0.0.1/", Reserved::Multicast),
            ("http://[ff02::1]/", Reserved::Multicast),
            ("http://[fe80::1]/", Reserved::LinkLocal),
            ("http://[64:ff9b::a00:1]/", Reserved::Private),
            ("http://[2002:7f00:1::]/", Reserved::Loopback),
            ("http://255.255.255.255/", Reserved::Broadcast),
            ("http://api.localhost/", Reserved::Loopback),
        ] {
            match strict.check_url(&url(target)).await {
                Err(Blocked::Address { reason: got, .. }) => assert_eq!(got, reason, "{target}"),
                other => panic!("{target}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn public_addresses_pass() {
        let strict = NetPolicy::strict();
        for target in [
            "https://8.8.8.8/hook",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "https://[2606:4700::1111]/",
            "http://192.0.2.10/",
        ] {
            strict.check_url(&url(target)).await.expect(target);
        }
        // A name that does not resolve here passes intake; the connect-time
        // resolver is what decides.
        strict
            .check_url(&url("https://receiver.invalid/hook"))
            .await
            .expect("unresolvable");
    }

    #[tokio::test]
    async fn an_allow_list_opts_networks_back_in() {
        let policy = NetPolicy::allowing(["10.1.0.0/16".parse::<IpNet>().expect("net")]);
        policy.check_url(&url("http://10.1.2.3/")).await.expect("allowed");
        assert!(policy.check_url(&url("http://10.2.0.1/")).await.is_err());
        let dev = NetPolicy::loopback_allowed();
        for target in [
            "http://127.0.0.1:3000/",
            "http://localhost/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            dev.check_url(&url(target)).await.expect(target);
        }
        assert!(dev.check_url(&url("http://169.254.169.254/")).await.is_err());
    }

    #[tokio::test]
    async fn the_resolver_never_hands_out_a_refused_address() {
        use reqwest::dns::Resolve;
        let strict = GuardedResolver::new(Arc::new(NetPolicy::strict()));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let err = match strict.resolve(name).await {
            Ok(_) => panic!("localhost resolved for a strict policy"),
            Err(err) => err,
        };
        assert!(err.to_string().contains("loopback"), "{err}");

        let dev = GuardedResolver::new(Arc::new(NetPolicy::loopback_allowed()));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let found: Vec<SocketAddr> = dev.resolve(name).await.expect("resolves").collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
