//! Who is calling: the client address behind any trusted proxies, and
//! whether a route lets that address in.
//!
//! The peer of a connection is the client unless it is one of
//! `[server] trusted_proxies`; only then are `Forwarded` and
//! `X-Forwarded-For` believed, read from the right (the entry the nearest
//! proxy added) past every address that is itself a trusted proxy. A header
//! that cannot be parsed leaves the proxy's own address as the client, so a
//! forged or broken header never widens access.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

/// An address block such as `203.0.113.0/24` or `2001:db8::/32`; a bare
/// address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this block. IPv4-mapped IPv6 addresses
    /// (`::ffff:192.0.2.1`) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are the same.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or block like 203.0.113.0/24"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether any block of `nets` holds `ip`.
pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(ip))
}

/// The address of the client that sent a request arriving from `peer`.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !any_contains(trusted, peer) {
        return peer;
    }
    let chain = forwarded_chain(headers).unwrap_or_default();
    let mut client = peer;
    for ip in chain.into_iter().rev() {
        client = ip;
        if !any_contains(trusted, ip) {
            break;
        }
    }
    client
}

/// The addresses a request passed through, first hop first, from
/// `Forwarded` if present, else `X-Forwarded-For`; `None` if the header is
/// malformed (then nothing in it is believed).
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        let mut chain = Vec::new();
        for value in forwarded {
            for element in value.to_str().ok()?.split(',') {
                chain.push(forwarded_for(element)?);
            }
        }
        return Some(chain);
    }
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for item in value.to_str().ok()?.split(',') {
            chain.push(parse_node(item.trim())?);
        }
    }
    Some(chain)
}

/// The `for=` address of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

/// An address, possibly with a port or in brackets: `192.0.2.1`,
/// `192.0.2.1:443`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| n.parse().expect("test block"))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("test name"),
                value.parse().expect("test value"),
            );
        }
        map
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().expect("test peer")
    }

    #[test]
    fn blocks_hold_their_addresses() {
        let v4: IpNet = "203.0.113.0/24".parse().unwrap();
        assert!(v4.contains("203.0.113.77".parse().unwrap()));
        assert!(!v4.contains("203.0.114.1".parse().unwrap()));
        assert!(v4.contains("::ffff:203.0.113.9".parse().unwrap()));
        let odd: IpNet = "10.0.0.0/13".parse().unwrap();
        assert!(odd.contains("10.7.255.255".parse().unwrap()));
        assert!(!odd.contains("10.8.0.0".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("203.0.113.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("198.51.100.1".parse().unwrap()));
        let one: IpNet = "192.0.2.1".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.1/32");
    }

    #[test]
    fn bad_blocks_are_refused_with_the_text() {
        let err = "10.0.0.0/33".parse::<IpNet>().unwrap_err();
        assert!(
            err.contains("10.0.0.0/33") && err.contains("0..=32"),
            "{err}"
        );
        let err = "example.com".parse::<IpNet>().unwrap_err();
        assert!(err.contains("example.com"), "{err}");
        assert!("::/129".parse::<IpNet>().is_err());
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        let ip = client_ip(peer("203.0.113.5:4000"), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "203.0.113.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_trusted_proxy_names_the_client_from_the_right() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.1.1.1")]);
        let ip = client_ip(peer("10.0.0.2:4000"), &h, &trusted);
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());

        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:443\"",
        )]);
        let ip = client_ip(peer("10.0.0.2:4000"), &h, &trusted);
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_malformed_header_leaves_the_proxy_as_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip")]);
        let ip = client_ip(peer("10.0.0.2:4000"), &h, &trusted);
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        let ip = client_ip(peer("10.0.0.2:4000"), &HeaderMap::new(), &trusted);
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    }
}
