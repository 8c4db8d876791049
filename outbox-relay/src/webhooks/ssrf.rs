//! The SSRF guard: webhook URLs must not reach the deployment's own network.
//!
//! A URL is refused unless it is `http` or `https` with a host and no credentials, and
//! — unless the operator allows private addresses — unless every address its host
//! resolves to is public: not loopback, private (RFC 1918, IPv6 ULA), link-local,
//! unspecified, multicast, broadcast, reserved (240/4), documentation or carrier-grade
//! NAT (100.64/10), IPv4 behind IPv4-mapped or NAT64 IPv6 included.
//!
//! Checked twice: at registration ([`check_url`], a `422 invalid_field`), and at every
//! delivery by the HTTP client's resolver ([`GuardedResolver`]), which drops refused
//! addresses before the client connects. The second check is the one that matters: a
//! name may resolve to a public address when registered and to 127.0.0.1 an hour later
//! (DNS rebinding); the client only ever connects to what the resolver returned.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::MAX_URL_LENGTH;

/// Whether an address is one a webhook may never reach (without the operator's leave).
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking, 198.18/15
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return refused_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || segments[0] == 0x2001 && segments[1] == 0x0db8 // documentation
}

/// Why a URL was refused, as the `detail` of a `422 invalid_field` (`url: …`).
fn refused(why: impl std::fmt::Display) -> String {
    format!("url: {why}")
}

/// Checks a URL for registration: its form, then (unless `allow_private`) every
/// address its host resolves to now. Returns the parsed URL, or the `invalid_field`
/// detail naming the field.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.is_empty() || raw.len() > MAX_URL_LENGTH {
        return Err(refused(format_args!(
            "must be 1–{MAX_URL_LENGTH} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|e| refused(format_args!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("must not carry credentials"));
    }
    let Some(host) = url.host_str() else {
        return Err(refused("must name a host"));
    };
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    // `host_str` keeps the brackets of an IPv6 literal; the resolver wants them off.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => return Err(refused(format_args!("its host {host} does not resolve"))),
    };
    if addrs.is_empty() {
        return Err(refused(format_args!("its host {host} does not resolve")));
    }
    if let Some(bad) = addrs.iter().find(|a| is_refused(a.ip())) {
        return Err(refused(format_args!(
            "its host resolves to {}, a loopback, private or link-local address",
            bad.ip()
        )));
    }
    Ok(url)
}

/// Whether a delivery may go to this URL's host when it is an IP literal (literals do
/// not pass through the resolver, so [`GuardedResolver`] never sees them).
pub fn literal_allowed(url: &Url, allow_private: bool) -> bool {
    let host = url.host_str().unwrap_or_default();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => allow_private || !is_refused(ip),
        Err(_) => true,
    }
}

/// The delivery client's resolver: the system's, minus the refused addresses (see the
/// module docs). With `allow_private` it is the system's resolver unchanged.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// The operator's leave to reach private addresses.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: reqwest puts the URL's port on the addresses itself.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_refused(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address webhooks may reach").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_are_not() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(
                is_refused(refused.parse().unwrap()),
                "{refused} must be refused"
            );
        }
        for public in ["93.184.216.34", "100.128.0.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_refused(public.parse().unwrap()), "{public} is public");
        }
    }

    #[tokio::test]
    async fn registration_refuses_bad_forms_and_private_hosts() {
        for url in [
            "ftp://example.com/x",
            "http://user:pw@example.com/",
            "not a url",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://localhost/hook",
            "http://10.0.0.7/hook",
        ] {
            let detail = check_url(url, false).await.unwrap_err();
            assert!(detail.starts_with("url: "), "{url}: {detail}");
        }
        assert!(check_url("http://127.0.0.1:8080/hook", true).await.is_ok());
        assert!(
            check_url(&format!("https://a.example/{}", "x".repeat(2100)), true)
                .await
                .is_err()
        );
    }
}
