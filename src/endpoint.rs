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
}
