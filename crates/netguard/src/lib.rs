//! The SSRF guard (SPEC section 2). hookline POSTs to URLs strangers give
//! it, so it refuses addresses that reach inside the network it runs in:
//! loopback, private, link-local, carrier-grade NAT, multicast, unspecified,
//! IPv4-mapped IPv6, cloud-metadata and other special-purpose addresses
//! (IANA's registries; an IPv6 address that carries an IPv4 one a gateway
//! connects to is judged by that one). Documentation ranges pass: they
//! reach nothing, inside or out.
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

pub mod egress;
mod resolve;

pub use egress::{EgressClient, EgressError, EgressProxy, EgressProxyError, EgressTlsError, SendError};
pub use resolve::{DEFAULT_LOOKUP_TIMEOUT, Lookup, LookupError, Resolve, Resolver, SystemResolver};

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

impl Reserved {
    /// The indefinite article its name takes: "an unspecified", "a private".
    pub fn article(self) -> &'static str {
        match self {
            Self::Unspecified | Self::Ipv4Mapped => "an",
            _ => "a",
        }
    }
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
        // IETF protocol assignments, the deprecated 6to4 relay anycast
        // (RFC 7526) and benchmarking.
        (192, 0, 0) | (192, 88, 99) | (198, 18..=19, _) => Reserved::Reserved,
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
        // Addresses that carry an IPv4 address a gateway will connect to:
        // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765), NAT64's well-known
        // prefix (64:ff9b::/96) and 6to4 (2002::/16).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => {
            return classify_v4(v4_from(hi, lo));
        }
        // The local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215) is the
        // operator's own translator, and where it puts the IPv4 address
        // depends on the prefix length it chose; the rest of 64:ff9b::/32
        // is unassigned. Teredo (2001::/32) tunnels through a relay to an
        // address it obfuscates. None of them is a receiver's address.
        [0x64, 0xff9b, ..] | [0x2001, 0, ..] => Reserved::Reserved,
        [first, ..] if first & 0xfe00 == 0xfc00 => Reserved::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => Reserved::LinkLocal,
        // The deprecated site-local range.
        [first, ..] if first & 0xffc0 == 0xfec0 => Reserved::Private,
        [first, ..] if first & 0xff00 == 0xff00 => Reserved::Multicast,
        // Only global unicast (2000::/3) is anyone's receiver: the rest is
        // unassigned or special (discard-only 100::/64 among them).
        [first, ..] if first & 0xe000 != 0x2000 => Reserved::Reserved,
        // IETF protocol assignments (2001::/23: benchmarking, ORCHID,
        // anycast services) and SRv6 segment identifiers (5f00::/16 is
        // outside 2000::/3, above).
        [0x2001, second, ..] if second < 0x0200 => Reserved::Reserved,
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
    #[error("{host} is {} {reason} address ({ip}), which callbacks may not reach", .reason.article())]
    Address {
        host: String,
        ip: IpAddr,
        reason: Reserved,
    },
    #[error("the URL has no host")]
    NoHost,
}

/// Why the intake's check of a URL did not pass: a refused address, or a
/// lookup that did not finish in time (nothing is known yet either way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error(transparent)]
    Lookup(#[from] LookupError),
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

    /// [`NetPolicy::check_url_with`] the system resolver and its default
    /// time limit.
    pub async fn check_url(&self, url: &Url) -> Result<(), CheckError> {
        self.check_url_with(url, &Resolver::system()).await
    }

    /// The intake's check: an address literal, or every address the host
    /// name resolves to now through `resolver`. `localhost` names are
    /// loopback without asking DNS (RFC 6761). A name that does not resolve
    /// passes: there is nothing to reach yet, and the connect-time check
    /// decides when there is. A lookup that outlasts the resolver's time
    /// limit (or finds its queue full) is an error of its own.
    pub async fn check_url_with(&self, url: &Url, resolver: &Resolver) -> Result<(), CheckError> {
        self.check_literal(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let name = name.trim_end_matches('.');
        if is_localhost(name) {
            return Ok(self.check_ip(name, IpAddr::V4(Ipv4Addr::LOCALHOST))?);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        match resolver.lookup(name, port).await? {
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
    resolver: Resolver,
}

impl GuardedResolver {
    /// On the callback client's own lookup threads ([`Resolver::system_for_callbacks`]).
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        Self::with_resolver(policy, Resolver::system_for_callbacks())
    }

    pub fn with_resolver(policy: Arc<NetPolicy>, resolver: Resolver) -> Self {
        Self { policy, resolver }
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// The addresses of `name` the policy allows, with `port`: what a
    /// connection may be opened to. All of them refused is the first
    /// refusal ([`Blocked`]); a lookup that fails or runs out of time is
    /// its error.
    pub async fn allowed(
        &self,
        name: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let name = name.trim_end_matches('.');
        let found: Vec<SocketAddr> = if is_localhost(name) {
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
        } else {
            self.resolver.lookup(name, port).await??
        };
        let mut refused = None;
        let mut allowed = Vec::with_capacity(found.len());
        for address in found {
            match self.policy.check_ip(name, address.ip()) {
                Ok(()) => allowed.push(SocketAddr::new(address.ip(), port)),
                Err(blocked) => refused = refused.or(Some(blocked)),
            }
        }
        match (allowed.is_empty(), refused) {
            (true, Some(blocked)) => Err(Box::new(blocked)),
            _ => Ok(allowed),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guarded = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = guarded.allowed(&name, 0).await?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
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
            assert!(
                matches!(err, CheckError::Blocked(Blocked::Address { .. })),
                "{target}: {err}"
            );
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
                Err(CheckError::Blocked(Blocked::Address { reason: got, .. })) => {
                    assert_eq!(got, reason, "{target}")
                }
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

    /// How an IANA special-purpose row is judged.
    #[derive(Debug, Clone, Copy)]
    enum Verdict {
        Refused(Reserved),
        Passes,
        /// By the IPv4 address in the last 32 bits.
        AsTrailingV4,
        /// By the IPv4 address in bits 16..48 (6to4).
        As6to4,
    }

    use Reserved::{
        Broadcast, CloudMetadata, Ipv4Mapped, LinkLocal, Loopback, Multicast, Private, SharedAddressSpace,
        Unspecified,
    };
    use Verdict::*;

    /// Every row of IANA's IPv4 and IPv6 Special-Purpose Address
    /// Registries (as of 2025), and a few ranges from elsewhere (multicast,
    /// site-local, IPv4-translated, cloud metadata), each with its verdict.
    /// Documentation ranges pass (they reach nothing); anycast services
    /// inside IETF protocol assignments are refused (no receiver lives there).
    const SPECIAL_PURPOSE: &[(&str, &str, Verdict)] = &[
        // IPv4
        ("0.0.0.0/8", "This network", Refused(Unspecified)),
        ("0.0.0.0/32", "This host on this network", Refused(Unspecified)),
        ("10.0.0.0/8", "Private-Use", Refused(Private)),
        (
            "100.64.0.0/10",
            "Shared Address Space",
            Refused(SharedAddressSpace),
        ),
        ("127.0.0.0/8", "Loopback", Refused(Loopback)),
        ("169.254.0.0/16", "Link Local", Refused(LinkLocal)),
        ("172.16.0.0/12", "Private-Use", Refused(Private)),
        (
            "192.0.0.0/24",
            "IETF Protocol Assignments",
            Refused(Reserved::Reserved),
        ),
        (
            "192.0.0.0/29",
            "IPv4 Service Continuity Prefix",
            Refused(Reserved::Reserved),
        ),
        ("192.0.0.8/32", "IPv4 dummy address", Refused(Reserved::Reserved)),
        (
            "192.0.0.9/32",
            "Port Control Protocol Anycast",
            Refused(Reserved::Reserved),
        ),
        (
            "192.0.0.10/32",
            "Traversal Using Relays around NAT Anycast",
            Refused(Reserved::Reserved),
        ),
        (
            "192.0.0.170/32",
            "NAT64/DNS64 Discovery",
            Refused(Reserved::Reserved),
        ),
        (
            "192.0.0.171/32",
            "NAT64/DNS64 Discovery",
            Refused(Reserved::Reserved),
        ),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", Passes),
        ("192.31.196.0/24", "AS112-v4", Passes),
        ("192.52.193.0/24", "AMT", Passes),
        (
            "192.88.99.0/24",
            "Deprecated (6to4 Relay Anycast)",
            Refused(Reserved::Reserved),
        ),
        ("192.168.0.0/16", "Private-Use", Refused(Private)),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", Passes),
        ("198.18.0.0/15", "Benchmarking", Refused(Reserved::Reserved)),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", Passes),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", Passes),
        ("240.0.0.0/4", "Reserved", Refused(Reserved::Reserved)),
        ("255.255.255.255/32", "Limited Broadcast", Refused(Broadcast)),
        (
            "224.0.0.0/4",
            "Multicast (IPv4 Multicast Address Space Registry)",
            Refused(Multicast),
        ),
        (
            "169.254.169.254/32",
            "Cloud metadata (AWS, GCP, Azure)",
            Refused(CloudMetadata),
        ),
        (
            "100.100.100.200/32",
            "Cloud metadata (Alibaba Cloud)",
            Refused(CloudMetadata),
        ),
        (
            "168.63.129.16/32",
            "Cloud metadata (Azure WireServer)",
            Refused(CloudMetadata),
        ),
        // IPv6
        ("::1/128", "Loopback Address", Refused(Loopback)),
        ("::/128", "Unspecified Address", Refused(Unspecified)),
        ("::ffff:0:0/96", "IPv4-mapped Address", Refused(Ipv4Mapped)),
        (
            "::/96",
            "IPv4-compatible (deprecated, RFC 4291)",
            Refused(Ipv4Mapped),
        ),
        ("::ffff:0:0:0/96", "IPv4-translated (RFC 2765)", AsTrailingV4),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", AsTrailingV4),
        (
            "64:ff9b:1::/48",
            "IPv4-IPv6 Translat. (local-use)",
            Refused(Reserved::Reserved),
        ),
        (
            "100::/64",
            "Discard-Only Address Block",
            Refused(Reserved::Reserved),
        ),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", Refused(Reserved::Reserved)),
        (
            "2001::/23",
            "IETF Protocol Assignments",
            Refused(Reserved::Reserved),
        ),
        ("2001::/32", "TEREDO", Refused(Reserved::Reserved)),
        (
            "2001:1::1/128",
            "Port Control Protocol Anycast",
            Refused(Reserved::Reserved),
        ),
        (
            "2001:1::2/128",
            "Traversal Using Relays around NAT Anycast",
            Refused(Reserved::Reserved),
        ),
        (
            "2001:1::3/128",
            "DNS-SD Service Registration Protocol Anycast",
            Refused(Reserved::Reserved),
        ),
        ("2001:2::/48", "Benchmarking", Refused(Reserved::Reserved)),
        ("2001:3::/32", "AMT", Refused(Reserved::Reserved)),
        ("2001:4:112::/48", "AS112-v6", Refused(Reserved::Reserved)),
        (
            "2001:10::/28",
            "Deprecated (previously ORCHID)",
            Refused(Reserved::Reserved),
        ),
        ("2001:20::/28", "ORCHIDv2", Refused(Reserved::Reserved)),
        (
            "2001:30::/28",
            "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
            Refused(Reserved::Reserved),
        ),
        ("2001:db8::/32", "Documentation", Passes),
        ("2002::/16", "6to4", As6to4),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", Passes),
        ("3fff::/20", "Documentation", Passes),
        (
            "5f00::/16",
            "Segment Routing (SRv6) SIDs",
            Refused(Reserved::Reserved),
        ),
        ("fc00::/7", "Unique-Local", Refused(Private)),
        ("fe80::/10", "Link-Local Unicast", Refused(LinkLocal)),
        ("fec0::/10", "Site-local (deprecated)", Refused(Private)),
        ("ff00::/8", "Multicast", Refused(Multicast)),
        (
            "fd00:ec2::254/128",
            "Cloud metadata (AWS IMDS on IPv6)",
            Refused(CloudMetadata),
        ),
    ];

    fn expected(ip: IpAddr, verdict: Verdict) -> Option<Reserved> {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => v6.segments(),
            IpAddr::V4(_) => panic!("{ip} is not IPv6"),
        };
        match verdict {
            Refused(reason) => Some(reason),
            Passes => None,
            AsTrailingV4 => {
                let s = v6(ip);
                classify_v4(v4_from(s[6], s[7]))
            }
            As6to4 => {
                let s = v6(ip);
                classify_v4(v4_from(s[1], s[2]))
            }
        }
    }

    #[test]
    fn every_special_purpose_row_gets_its_verdict() {
        let rows: Vec<(IpNet, &str, Verdict)> = SPECIAL_PURPOSE
            .iter()
            .map(|&(net, name, verdict)| (net.parse().expect(net), name, verdict))
            .collect();
        let mut checked = 0;
        for (net, name, _) in &rows {
            // The first and last address of the row, each judged by the
            // most specific row that holds it.
            for ip in [net.network(), net.broadcast()] {
                let (_, holder, verdict) = rows
                    .iter()
                    .filter(|(other, ..)| other.contains(&ip))
                    .max_by_key(|(other, ..)| other.prefix_len())
                    .expect("its own row holds it");
                let want = expected(ip, *verdict);
                assert_eq!(classify(ip), want, "{ip} in {net} ({name}; judged as {holder})");
                checked += 1;
            }
        }
        // A global unicast address, and public IPv4 behind each embedding.
        for (ip, want) in [
            ("2606:4700::1111", None),
            ("8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("::ffff:0:808:808", None),
            ("2002:808:808::1", None),
            ("64:ff9b::a9fe:a9fe", Some(CloudMetadata)),
            ("2002:a9fe:a9fe::", Some(CloudMetadata)),
            ("::ffff:0:a00:1", Some(Private)),
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert_eq!(classify(ip), want, "{ip}");
            checked += 1;
        }
        println!("{} registry rows, {checked} addresses judged", rows.len());
    }

    #[tokio::test]
    async fn the_issues_embedded_addresses_are_refused() {
        let strict = NetPolicy::strict();
        for (target, reason) in [
            ("http://[64:ff9b:1::a9fe:a9fe]/", Reserved::Reserved),
            ("http://[::ffff:0:7f00:1]/", Loopback),
            ("http://[::ffff:0:127.0.0.1]/", Loopback),
            ("http://[2001::7f00:1]/", Reserved::Reserved),
        ] {
            match strict.check_url(&url(target)).await {
                Err(CheckError::Blocked(Blocked::Address { reason: got, .. })) => {
                    assert_eq!(got, reason, "{target}")
                }
                other => panic!("{target}: {other:?}"),
            }
        }
    }

    #[test]
    fn refusals_read_as_english() {
        let strict = NetPolicy::strict();
        let said = |ip: &str| {
            let ip: IpAddr = ip.parse().expect(ip);
            strict.check_ip("h", ip).expect_err("refused").to_string()
        };
        assert_eq!(
            said("0.0.0.0"),
            "h is an unspecified address (0.0.0.0), which callbacks may not reach"
        );
        assert!(said("::ffff:8.8.8.8").starts_with("h is an IPv4-mapped IPv6 address"));
        assert!(said("10.0.0.1").starts_with("h is a private address"));
    }

    /// A resolver that never answers, as a DNS server that drops queries.
    #[derive(Debug)]
    struct Silent;

    impl Resolve for Silent {
        fn lookup(&self, _name: &str, _port: u16) -> Lookup {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_lookup_that_never_answers_ends_at_its_time_limit() {
        let limit = std::time::Duration::from_millis(200);
        let silent = Resolver::new(Arc::new(Silent), limit);
        let started = std::time::Instant::now();
        let err = NetPolicy::strict()
            .check_url_with(&url("https://receiver.example/hook"), &silent)
            .await
            .expect_err("no answer is not a pass");
        let took = started.elapsed();
        println!("a silent resolver: {err} after {:.2} s", took.as_secs_f64());
        assert!(
            matches!(err, CheckError::Lookup(LookupError::TimedOut { .. })),
            "{err}"
        );
        assert!(took < limit * 3, "{took:?}");
        // Address literals and localhost never ask it.
        NetPolicy::strict()
            .check_url_with(&url("https://8.8.8.8/"), &silent)
            .await
            .expect("a literal");
        let guarded = GuardedResolver::with_resolver(Arc::new(NetPolicy::strict()), silent);
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "receiver.example".parse().expect("name");
        let err = match guarded.resolve(name).await {
            Ok(_) => panic!("a silent resolver resolved"),
            Err(err) => err,
        };
        assert!(err.to_string().contains("took longer"), "{err}");
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
