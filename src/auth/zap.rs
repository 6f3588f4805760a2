//! The ZAP handler (RFC 27/ZAP): the thread libzmq asks, over `inproc://zeromq.zap.01` in the
//! socket's context, whether a peer that finished its handshake may in. Plus the watcher
//! that counts peers refused before ZAP is asked (wrong mechanism, wrong server key).
//!
//! Request, one frame each: `1.0`, request id, domain, address, routing id, mechanism
//! (`NULL`, `PLAIN`, `CURVE`), then credentials (PLAIN: user, password; CURVE: the client's
//! 32-byte public key). Reply: `1.0`, request id, status code (`200` in, `400` refused,
//! `500` malformed request), status text, user id, metadata (empty).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;

use super::credentials::{z85, Key};
use super::{ServerMechanism, ServerPolicy};
use crate::error::{Error, Result};

/// Where libzmq sends ZAP requests (fixed by RFC 27), one handler per context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// How often the threads look at the process stop flag.
const POLL_MS: i64 = 100;

/// A peer refused, as traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Its IP address, or the endpoint it reached when libzmq does not say.
    pub address: String,
    /// `NULL`, `PLAIN`, `CURVE`, or `handshake` when it failed before ZAP was asked.
    pub mechanism: String,
    pub reason: String,
    /// Peers refused so far in this process, this one included.
    pub total: u64,
}

/// Refusals traced one by one; after these, one in every [`TRACE_EVERY`], so a flood of
/// bad peers cannot fill the log.
const TRACE_FIRST: u64 = 100;
const TRACE_EVERY: u64 = 1000;

static REFUSED: AtomicU64 = AtomicU64::new(0);
type Sink = Box<dyn Fn(&Refusal) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Where refusals are traced (the binary renders them); set once, before any bind.
pub fn on_refusal(sink: impl Fn(&Refusal) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Peers refused so far in this process.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

fn refuse(address: &str, mechanism: &str, reason: String) {
    let total = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    if total <= TRACE_FIRST || total.is_multiple_of(TRACE_EVERY) {
        if let Some(sink) = SINK.get() {
            sink(&Refusal {
                address: address.to_string(),
                mechanism: mechanism.to_string(),
                reason,
                total,
            });
        }
    }
}

/// A ZAP request, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub request_id: Vec<u8>,
    pub address: String,
    pub mechanism: String,
    pub credentials: Vec<Vec<u8>>,
}

impl Request {
    /// Parses the frames, or says why they are not a 1.0 request (and its id, if any).
    pub fn parse(frames: &[Vec<u8>]) -> std::result::Result<Request, (Vec<u8>, String)> {
        let id = frames.get(1).cloned().unwrap_or_default();
        if frames.len() < 6 {
            return Err((id, format!("{} frames, expected 6 or more", frames.len())));
        }
        if frames[0] != b"1.0" {
            return Err((id, "version is not 1.0".into()));
        }
        Ok(Request {
            request_id: id,
            address: String::from_utf8_lossy(&frames[3]).into_owned(),
            mechanism: String::from_utf8_lossy(&frames[5]).into_owned(),
            credentials: frames[6..].to_vec(),
        })
    }
}

/// The reply frames for `request_id`.
pub fn reply(request_id: &[u8], status: &str, text: &str, user: &str) -> Vec<Vec<u8>> {
    vec![
        b"1.0".to_vec(),
        request_id.to_vec(),
        status.as_bytes().to_vec(),
        text.as_bytes().to_vec(),
        user.as_bytes().to_vec(),
        Vec::new(),
    ]
}

/// Lets `request` in (its user id) or refuses it (why). Pure.
pub fn decide(policy: &ServerPolicy, request: &Request) -> std::result::Result<String, String> {
    if !policy.allow.is_empty() && !policy.allow.iter().any(|a| a.contains(&request.address)) {
        return Err(format!("address {:?} is not in --allow", request.address));
    }
    match (&policy.mechanism, request.mechanism.as_str()) {
        (ServerMechanism::Null, "NULL") => Ok(String::new()),
        (ServerMechanism::Plain(users), "PLAIN") => {
            let [user, password] = request.credentials.as_slice() else {
                return Err("PLAIN request without user and password".into());
            };
            let user = String::from_utf8_lossy(user).into_owned();
            match users.get(&user) {
                Some(want) if same(want.as_bytes(), password) => Ok(user),
                Some(_) => Err(format!("wrong password for user {user:?}")),
                None => Err(format!("unknown user {user:?}")),
            }
        }
        (ServerMechanism::Curve { clients, .. }, "CURVE") => {
            let key: Key = match request.credentials.as_slice() {
                [key] => key
                    .as_slice()
                    .try_into()
                    .map_err(|_| "CURVE request without a 32-byte key".to_string())?,
                _ => return Err("CURVE request without a client key".into()),
            };
            if clients.is_empty() || clients.contains(&key) {
                Ok(z85(&key))
            } else {
                Err(format!("client key {} is not in the allow-list", z85(&key)))
            }
        }
        (_, other) => Err(format!("mechanism {other} is not the one required")),
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Starts a ZAP handler for `ctx` unless one is running. The first to bind the ZAP endpoint
/// in a context serves it, so a second call finds the address in use and returns.
pub fn ensure_handler(ctx: &zmq::Context, policy: &'static ServerPolicy) -> Result<()> {
    let socket = ctx
        .socket(zmq::REP)
        .map_err(|e| Error::zmq("cannot create the ZAP socket", e))?;
    match socket.bind(ZAP_ENDPOINT) {
        Ok(()) => {}
        Err(zmq::Error::EADDRINUSE) => return Ok(()),
        Err(e) => return Err(Error::zmq("cannot bind the ZAP handler", e)),
    }
    socket
        .set_linger(0)
        .map_err(|e| Error::zmq("cannot set LINGER", e))?;
    thread::Builder::new()
        .name("zap".into())
        .spawn(move || serve(socket, policy))
        .map_err(|e| Error::Internal(format!("cannot start the ZAP handler: {e}")))?;
    Ok(())
}

/// Answers ZAP requests until the process is asked to stop.
fn serve(socket: zmq::Socket, policy: &ServerPolicy) {
    while !crate::shutdown::requested() {
        match socket.poll(zmq::POLLIN, POLL_MS) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return, // the context is going away
        }
        let Ok(frames) = socket.recv_multipart(0) else {
            continue;
        };
        let answer = match Request::parse(&frames) {
            Ok(request) => match decide(policy, &request) {
                Ok(user) => reply(&request.request_id, "200", "OK", &user),
                Err(reason) => {
                    refuse(&request.address, &request.mechanism, reason.clone());
                    reply(&request.request_id, "400", &reason, "")
                }
            },
            Err((id, reason)) => reply(&id, "500", &reason, ""),
        };
        // REP must answer before it can read again; a failed send only loses this peer.
        let _ = socket.send_multipart(answer, 0);
    }
}

/// Watches bound `socket` for handshakes that fail before ZAP is asked (a peer with no or the
/// wrong mechanism, or a CURVE peer with the wrong server key) and counts them as refused.
pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let at = format!(
        "inproc://pirate-auth-monitor-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let events = zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
        | zmq::SocketEvent::MONITOR_STOPPED as i32;
    socket
        .monitor(&at, events)
        .map_err(|e| Error::zmq("cannot monitor the socket", e))?;
    // Connected here, before the bind, so no event is sent before anyone listens.
    let monitor = ctx
        .socket(zmq::PAIR)
        .map_err(|e| Error::zmq("cannot create a monitor socket", e))?;
    monitor
        .connect(&at)
        .map_err(|e| Error::zmq("cannot connect the monitor socket", e))?;
    let endpoint = endpoint.to_string();
    thread::Builder::new()
        .name("auth-monitor".into())
        .spawn(move || watch_events(monitor, &endpoint))
        .map_err(|e| Error::Internal(format!("cannot start the monitor: {e}")))?;
    Ok(())
}

fn watch_events(monitor: zmq::Socket, endpoint: &str) {
    while !crate::shutdown::requested() {
        match monitor.poll(zmq::POLLIN, POLL_MS) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(frames) = monitor.recv_multipart(0) else {
            continue;
        };
        // Frame 1: event (u16) and value (u32), little-endian as the host; frame 2: endpoint.
        let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
            continue;
        };
        let event = u16::from_ne_bytes([head[0], head[1]]);
        let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
        match zmq::SocketEvent::from_raw(event) {
            zmq::SocketEvent::MONITOR_STOPPED => return,
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => {
                refuse(endpoint, "handshake", protocol_error(value))
            }
            _ => {}
        }
    }
}

/// Words for a ZMTP protocol error (zmq.h's ZMQ_PROTOCOL_ERROR_*).
fn protocol_error(code: u32) -> String {
    match code {
        0x1100_0002 => "the peer uses another security mechanism (or none)".into(),
        0x1100_0001 => "cryptographic error (a CURVE peer with the wrong server key?)".into(),
        0x1000_0013 => "malformed HELLO (a CURVE peer with the wrong server key?)".into(),
        0x1000_0014 => "malformed INITIATE".into(),
        other => format!("ZMTP protocol error {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::credentials::{Allow, KeyPair};
    use super::*;

    fn request(address: &str, mechanism: &str, credentials: &[&[u8]]) -> Request {
        let mut frames: Vec<Vec<u8>> = [
            &b"1.0"[..],
            b"7",
            b"pirate",
            address.as_bytes(),
            b"",
            mechanism.as_bytes(),
        ]
        .iter()
        .map(|f| f.to_vec())
        .collect();
        frames.extend(credentials.iter().map(|c| c.to_vec()));
        Request::parse(&frames).unwrap()
    }

    fn plain() -> ServerPolicy {
        ServerPolicy {
            mechanism: ServerMechanism::Plain(BTreeMap::from([("alice".into(), "pw".into())])),
            allow: Vec::new(),
        }
    }

    #[test]
    fn plain_lets_in_the_right_password_only() {
        let p = plain();
        assert_eq!(
            decide(&p, &request("127.0.0.1", "PLAIN", &[b"alice", b"pw"])),
            Ok("alice".into())
        );
        let wrong = decide(&p, &request("127.0.0.1", "PLAIN", &[b"alice", b"pW"]));
        assert!(wrong.unwrap_err().contains("wrong password"));
        let unknown = decide(&p, &request("127.0.0.1", "PLAIN", &[b"mallory", b"pw"]));
        assert!(unknown.unwrap_err().contains("unknown user"));
        assert!(decide(&p, &request("127.0.0.1", "NULL", &[])).is_err());
    }

    #[test]
    fn curve_checks_the_allow_list_when_there_is_one() {
        let (server, alice, bob) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let mut p = ServerPolicy {
            mechanism: ServerMechanism::Curve {
                pair: server,
                clients: BTreeSet::new(),
            },
            allow: Vec::new(),
        };
        let from = |k: &KeyPair| request("10.0.0.1", "CURVE", &[&k.public]);
        assert_eq!(
            decide(&p, &from(&bob)),
            Ok(z85(&bob.public)),
            "no list: any key"
        );
        if let ServerMechanism::Curve { clients, .. } = &mut p.mechanism {
            clients.insert(alice.public);
        }
        assert!(decide(&p, &from(&alice)).is_ok());
        assert!(decide(&p, &from(&bob)).unwrap_err().contains("allow-list"));
    }

    #[test]
    fn allow_refuses_other_addresses_whatever_the_credentials() {
        let mut p = plain();
        p.allow = vec![Allow::parse("192.168.0.0/24").unwrap()];
        assert!(decide(&p, &request("192.168.0.9", "PLAIN", &[b"alice", b"pw"])).is_ok());
        let outside = decide(&p, &request("192.168.1.9", "PLAIN", &[b"alice", b"pw"]));
        assert!(outside.unwrap_err().contains("--allow"));
        p.mechanism = ServerMechanism::Null;
        assert!(decide(&p, &request("192.168.0.1", "NULL", &[])).is_ok());
        assert!(decide(&p, &request("10.0.0.1", "NULL", &[])).is_err());
    }

    #[test]
    fn malformed_requests_are_answered_500_with_their_id() {
        let err = Request::parse(&[b"1.0".to_vec(), b"9".to_vec()]).unwrap_err();
        assert_eq!(err.0, b"9");
        let frames: Vec<Vec<u8>> = ["2.0", "1", "d", "a", "", "NULL"]
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        assert!(Request::parse(&frames).unwrap_err().1.contains("version"));
        let r = reply(b"9", "500", "bad", "");
        assert_eq!(r.len(), 6);
        assert_eq!(r[2], b"500");
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
