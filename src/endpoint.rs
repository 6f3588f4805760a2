//! Endpoint syntax, checked before anything starts: a mistyped endpoint is a usage error
//! (exit 2) with a one-line reason, not a socket that silently connects nowhere.
//!
//! ZeroMQ itself is lenient in ways that hide mistakes: `tcp://127.0.0.1:99999` is taken
//! modulo 65536 (another port), and a connect to a malformed address may only fail in the
//! background. `pirate` roles are separate processes, so only `tcp://HOST:PORT` and
//! `ipc://PATH` can work; `inproc://` (one process only) and the multicast transports
//! (publish-subscribe only) cannot.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which way an endpoint is used: a bind may name every interface (`*`) and an ephemeral
/// port (`*`); a connect must name one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Bind,
    Connect,
}

/// The longest `ipc://` path the kernel takes (`sun_path` is 108 bytes with its NUL).
const IPC_PATH_MAX: usize = 107;

/// Checks `text` as an endpoint used on `side`; the error is one line naming what is wrong.
pub fn check(text: &str, side: Side) -> Result<(), String> {
    let expected = match side {
        Side::Bind => "expected tcp://HOST:PORT (HOST may be *) or ipc://PATH",
        Side::Connect => "expected tcp://HOST:PORT or ipc://PATH",
    };
    let Some((transport, address)) = text.split_once("://") else {
        return Err(format!("'{text}' is not an endpoint: {expected}"));
    };
    match transport {
        "tcp" => check_tcp(text, address, side),
        "ipc" if address.is_empty() => Err(format!("'{text}' has no path: {expected}")),
        "ipc" if address.len() > IPC_PATH_MAX => Err(format!(
            "the path of '{text}' is longer than {IPC_PATH_MAX} bytes, the most ipc:// takes"
        )),
        "ipc" => Ok(()),
        "inproc" => Err(format!(
            "'{text}': inproc:// only reaches sockets in the same process, and every pirate \
             role is a process of its own: use tcp:// or ipc://"
        )),
        _ => Err(format!(
            "'{text}': transport '{transport}' does not work here: {expected}"
        )),
    }
}

fn check_tcp(text: &str, address: &str, side: Side) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("'{text}' has no port: expected tcp://HOST:PORT"));
    };
    if !(side == Side::Bind && port == "*") {
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            Ok(_) => {
                return Err(format!(
                    "port {port} in '{text}' is out of range: ports are 1 to 65535"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "port '{port}' in '{text}' is not a number from 1 to 65535"
                ))
            }
        }
    }
    if host == "*" {
        return match side {
            Side::Bind => Ok(()),
            Side::Connect => Err(format!(
                "'{text}': cannot connect to * (every interface): name a host, e.g. \
                 tcp://localhost:{port}"
            )),
        };
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("'{inner}' in '{text}' is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err(format!(
            "host '{host}' in '{text}' is not valid (an IPv6 address goes in brackets: \
             tcp://[::1]:5555)"
        ));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || host.len() > 253 || !host.chars().all(name_char) {
        return Err(format!(
            "host '{host}' in '{text}' is not a host name, an IP address or an interface"
        ));
    }
    // Digits and dots only: it can only be meant as an IPv4 address.
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') && host.parse::<Ipv4Addr>().is_err() {
        return Err(format!("'{host}' in '{text}' is not an IPv4 address"));
    }
    Ok(())
}

/// The first port of the kernel's ephemeral range (Linux's default 32768 where it cannot
/// be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
}

/// A port on 127.0.0.1 that was free a moment ago, never the same twice in this process, and
/// below the kernel's ephemeral range. A port from `bind(0)` comes from that range, where any
/// connection's own source port may take it before the role binds it, or while a restarted
/// role is down (a reconnecting peer can even connect to itself there); `chaos run` binds its
/// topology, and tests their roles, on ports from here.
pub fn free_loopback_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = u32::from(ephemeral_low());
    let low = ephemeral.saturating_sub(12_000).max(1024);
    let span = ephemeral.saturating_sub(low).max(1);
    // Spread processes that start at once (test binaries, chaos runs side by side).
    let start = std::process::id().wrapping_mul(97) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free loopback port below the ephemeral range",
    ))
}

/// A range of ports `LOW-HIGH` (both included) that `chaos run --ports` confines its
/// topology to, for a CI host whose firewall opens only those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// Parses `LOW-HIGH`: two ports from 1 to 65535, LOW not above HIGH.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let bad = |why: &str| format!("invalid port range '{text}': {why}");
        let (low, high) = text
            .split_once('-')
            .ok_or_else(|| bad("expected LOW-HIGH, e.g. 40000-40099"))?;
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("'{p}' is not a port from 1 to 65535"))),
            Ok(n) => Ok(n),
        };
        let (low, high) = (port(low)?, port(high)?);
        if low > high {
            return Err(bad("LOW is above HIGH"));
        }
        Ok(PortRange { low, high })
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }

    /// Never empty (LOW <= HIGH); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// Like [`free_loopback_port`], but from `range`: a port of 127.0.0.1 free a moment ago and
/// never the same twice in this process, tried in order from LOW; an error when every port of
/// the range is taken (by this process or another).
pub fn free_loopback_port_in(range: PortRange) -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n >= range.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free port left in --ports {range}"),
            ));
        }
        let port = range.low + n as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_pass() {
        for (e, side) in [
            ("tcp://*:5555", Side::Bind),
            ("tcp://*:*", Side::Bind),
            ("tcp://127.0.0.1:1", Side::Bind),
            ("tcp://eth0:5555", Side::Bind),
            ("tcp://localhost:65535", Side::Connect),
            ("tcp://my-host.example.org:5555", Side::Connect),
            ("tcp://[::1]:5555", Side::Connect),
            ("tcp://[fe80::1]:5555", Side::Bind),
            ("ipc:///tmp/pirate", Side::Bind),
            ("ipc://relative.sock", Side::Connect),
        ] {
            assert_eq!(check(e, side), Ok(()), "{e}");
        }
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        for (e, side, says) in [
            ("foo", Side::Connect, "is not an endpoint"),
            ("", Side::Bind, "is not an endpoint"),
            ("localhost:5555", Side::Connect, "is not an endpoint"),
            ("udp://127.0.0.1:5555", Side::Connect, "transport 'udp'"),
            ("pgm://eth0;239.1.1.1:5555", Side::Bind, "transport 'pgm'"),
            ("inproc://x", Side::Bind, "inproc://"),
            ("tcp://127.0.0.1:99999", Side::Connect, "out of range"),
            ("tcp://127.0.0.1:65536", Side::Bind, "out of range"),
            ("tcp://127.0.0.1:0", Side::Connect, "out of range"),
            ("tcp://127.0.0.1:http", Side::Connect, "not a number"),
            ("tcp://127.0.0.1:", Side::Connect, "not a number"),
            ("tcp://127.0.0.1", Side::Connect, "has no port"),
            ("tcp://*:*", Side::Connect, "not a number"),
            ("tcp://*:5555", Side::Connect, "cannot connect to *"),
            ("tcp://:5555", Side::Connect, "host ''"),
            ("tcp://bad host:5555", Side::Connect, "host 'bad host'"),
            ("tcp://ho$t:5555", Side::Bind, "host 'ho$t'"),
            ("tcp://999.1.1.1:5555", Side::Connect, "not an IPv4 address"),
            ("tcp://::1:5555", Side::Connect, "in brackets"),
            ("tcp://[::g]:5555", Side::Connect, "not an IPv6 address"),
            ("ipc://", Side::Bind, "has no path"),
        ] {
            let err = check(e, side).expect_err(e);
            assert!(err.contains(says), "{e}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let long = format!("ipc:///{}", "x".repeat(200));
        assert!(check(&long, Side::Bind)
            .unwrap_err()
            .contains("longer than"));
    }

    #[test]
    fn port_ranges_parse_and_bad_ones_say_why() {
        let r = PortRange::parse("40000-40003").unwrap();
        assert_eq!((r.low, r.high, r.len()), (40000, 40003, 4));
        assert_eq!(r.to_string(), "40000-40003");
        assert_eq!(PortRange::parse("7-7").unwrap().len(), 1);
        for (bad, why) in [
            ("40000", "expected LOW-HIGH"),
            ("5-4", "LOW is above HIGH"),
            ("0-10", "'0' is not a port"),
            ("1-70000", "'70000' is not a port"),
            ("a-b", "'a' is not a port"),
        ] {
            let e = PortRange::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn free_ports_in_a_range_stay_in_it_and_run_out() {
        // Take a port the kernel chose, then ask for a range of it and the next one: only
        // ports of the range come back, distinct, then an error.
        let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = held.local_addr().unwrap().port().min(65534);
        drop(held);
        let range = PortRange {
            low: p,
            high: p + 1,
        };
        let mut got = Vec::new();
        while let Ok(port) = free_loopback_port_in(range) {
            assert!(range.low <= port && port <= range.high, "{port}");
            assert!(!got.contains(&port));
            got.push(port);
        }
        assert!(got.len() <= 2);
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let a = free_loopback_port().unwrap();
        let b = free_loopback_port().unwrap();
        assert_ne!(a, b);
        let ephemeral = ephemeral_low();
        assert!(a < ephemeral && b < ephemeral, "{a} {b} {ephemeral}");
        std::net::TcpListener::bind(("127.0.0.1", a)).expect("it is free");
    }
}
