//! Keeps webhook deliveries away from the operator's own network.
//!
//! Endpoints must be `https` URLs whose host resolves only to global unicast addresses. The
//! check runs twice: when a subscription is created or changed ([`check_endpoint`]), and again
//! on every connection (the delivery client's resolver and [`check_literal_host`]), so a name
//! that later resolves to a private address (DNS rebinding) is refused too. An operator
//! running the service for local development may allow plain `http` and non-global addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Longest accepted endpoint URL.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Whether an IPv4 address is reachable on the public internet.
pub fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network"
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved, broadcast
}

/// Whether an IPv6 address is reachable on the public internet (IPv4-mapped and translated
/// forms are judged by the IPv4 address they carry).
pub fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_global_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Only 2000::/3 is global unicast; everything else (::, ::1, IPv4-compatible, fc00::/7,
    // fe80::/10, ff00::/8, 64:ff9b:1::/48, 100::/64 ...) is not.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    if s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8) {
        // IETF protocol assignments (incl. Teredo 2001::/32) and documentation 2001:db8::/32.
        return false;
    }
    // 6to4 (embeds an IPv4 address of any kind) and documentation 3fff::/20.
    !(s[0] == 0x2002 || (s[0] & 0xfff0) == 0x3ff0)
}

/// Whether an address is reachable on the public internet.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// Parses an endpoint and checks its form: absolute `https` URL (or `http` when allowed) with
/// a host, no credentials, no fragment.
pub fn parse_endpoint(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.trim().is_empty() {
        return Err("endpoint must not be empty".to_owned());
    }
    if raw.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "endpoint must be at most {MAX_ENDPOINT_LEN} characters"
        ));
    }
    let url = Url::parse(raw).map_err(|e| format!("endpoint is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("endpoint must use https".to_owned()),
        _ => return Err("endpoint must be an https URL".to_owned()),
    }
    if url.host().is_none() {
        return Err("endpoint must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint must not carry credentials".to_owned());
    }
    if url.fragment().is_some() {
        return Err("endpoint must not have a fragment".to_owned());
    }
    Ok(url)
}

/// Refuses a URL whose host is a non-global IP literal (the connector does not resolve those,
/// so the resolver alone would not see them).
pub fn check_literal_host(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_global(ip) {
        Ok(())
    } else {
        Err(format!("endpoint address {ip} is not a public address"))
    }
}

/// Full check at creation: form, literal address, and every address the host resolves to.
pub async fn check_endpoint(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = parse_endpoint(raw, allow_private)?;
    check_literal_host(&url, allow_private)?;
    if allow_private {
        return Ok(url);
    }
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| format!("endpoint host {name} does not resolve"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("endpoint host {name} does not resolve"));
        }
        if let Some(bad) = addrs.iter().find(|a| !is_global(a.ip())) {
            return Err(format!(
                "endpoint host {name} resolves to {}, which is not a public address",
                bad.ip()
            ));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> bool {
        is_global(s.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4() {
        for private in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!v4(private), "{private} must not be global");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.0.1",
            "100.128.0.1",
            "172.32.0.1",
            "93.184.216.34",
        ] {
            assert!(v4(public), "{public} must be global");
        }
    }

    #[test]
    fn classifies_ipv6() {
        for private in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:c0a8:101::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "3fff::1",
            "fec0::1",
        ] {
            assert!(!v4(private), "{private} must not be global");
        }
        for public in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(v4(public), "{public} must be global");
        }
    }

    #[test]
    fn endpoint_form() {
        assert!(parse_endpoint("https://example.com/hook", false).is_ok());
        assert!(parse_endpoint("http://example.com/hook", false).is_err());
        assert!(parse_endpoint("http://example.com/hook", true).is_ok());
        assert!(parse_endpoint("ftp://example.com/", true).is_err());
        assert!(parse_endpoint("not a url", true).is_err());
        assert!(parse_endpoint("", true).is_err());
        assert!(parse_endpoint("https://user:pw@example.com/", true).is_err());
        assert!(
            parse_endpoint(&format!("https://example.com/{}", "a".repeat(3000)), true).is_err()
        );
    }

    #[tokio::test]
    async fn private_endpoints_are_refused_unless_allowed() {
        for url in [
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/x",
            "https://10.0.0.1:8443/x",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/hook",
        ] {
            assert!(
                check_endpoint(url, false).await.is_err(),
                "{url} must be refused"
            );
            assert!(
                check_endpoint(url, true).await.is_ok(),
                "{url} must be allowed in development"
            );
        }
        assert!(check_endpoint("https://8.8.8.8/hook", false).await.is_ok());
    }
}
