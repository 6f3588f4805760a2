//! Handshake refusals seen by connecting sockets that log in (PLAIN or CURVE), so that a
//! client or worker can say "authentication refused by …" instead of "offline".
//!
//! A refused login never reaches the application: libzmq reports it only through the socket
//! monitor. [`watch`] (called by [`crate::transport`] on each secured connect) opens the
//! monitor's PAIR before the socket connects and reads it on a thread of its own until the
//! socket closes (`ZMQ_EVENT_MONITOR_STOPPED`). Each monitor message is two frames: the event
//! (u16) and its value (u32), in host byte order, then the endpoint. What it records:
//!
//! - `HANDSHAKE_FAILED_AUTH`: the server's authenticator (ZAP) refused us; the value is its
//!   status code (`400`, or `300`/`500`).
//! - `HANDSHAKE_FAILED_PROTOCOL`: the handshake broke on a ZMTP rule; the value says which
//!   (a mechanism mismatch, a CURVE key that does not decrypt).
//! - `HANDSHAKE_FAILED_NO_DETAIL`: the peer closed the connection mid-handshake (a CURVE server
//!   that cannot read our HELLO does that).
//! - `HANDSHAKE_SUCCEEDED` forgets the endpoint's refusal: a later login worked.
//!
//! Bounds: at most [`MAX_ENDPOINTS`] endpoints are remembered (beyond that, new ones are not
//! recorded: the caller then reports what it reported before, "offline"); one thread per
//! secured connecting socket, for that socket's lifetime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;

/// Most endpoints whose refusal is remembered at once.
pub const MAX_ENDPOINTS: usize = 256;

static REFUSED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Why the last handshake with `endpoint` was refused, if it was (and none succeeded since).
pub fn refused_by(endpoint: &str) -> Option<String> {
    let refused = REFUSED.lock().ok()?;
    refused.as_ref()?.get(endpoint).cloned()
}

/// The one line a client or worker says for a refusal `why` by `endpoint`.
pub fn refusal_line(endpoint: &str, why: &str) -> String {
    format!("authentication refused by {endpoint}: {why}")
}

fn record(endpoint: &str, why: Option<String>) {
    let Ok(mut refused) = REFUSED.lock() else {
        return;
    };
    let refused = refused.get_or_insert_with(HashMap::new);
    match why {
        Some(why) if refused.len() < MAX_ENDPOINTS || refused.contains_key(endpoint) => {
            refused.insert(endpoint.to_string(), why);
        }
        Some(_) => {}
        None => {
            refused.remove(endpoint);
        }
    }
}

/// What a monitor event says about the login: `Some(Some(why))` refused, `Some(None)`
/// accepted, `None` nothing (another event).
fn verdict(event: zmq::SocketEvent, value: u32) -> Option<Option<String>> {
    Some(match event {
        zmq::SocketEvent::HANDSHAKE_SUCCEEDED => None,
        zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => Some(format!(
            "its authenticator answered {value} (wrong user, password or key, or not on its \
             allow list)"
        )),
        zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => Some(match value {
            0x1100_0002 => "it uses another security mechanism (or none)".into(),
            0x1100_0001 | 0x1000_0013 => {
                "the CURVE handshake did not decrypt (the wrong server key?)".into()
            }
            other => format!("ZMTP protocol error {other:#x} in the handshake"),
        }),
        zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL => Some(
            "it closed the connection during the handshake (the wrong CURVE server key?)".into(),
        ),
        _ => return None,
    })
}

/// Watches `socket` (about to connect to `endpoint`) for handshake results until it closes.
/// Errors only if the monitor cannot be set up; the socket then works unwatched.
pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> zmq::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let at = format!(
        "inproc://pirate-handshake-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
        | zmq::SocketEvent::MONITOR_STOPPED as i32;
    socket.monitor(&at, events)?;
    let pair = ctx.socket(zmq::PAIR)?;
    pair.set_linger(0)?;
    // Connected before the watched socket connects, so no handshake event is missed.
    pair.connect(&at)?;
    let endpoint = endpoint.to_string();
    thread::Builder::new()
        .name("pirate-handshake".into())
        .spawn(move || loop {
            let Ok(frames) = pair.recv_multipart(0) else {
                return;
            };
            let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let event = zmq::SocketEvent::from_raw(u16::from_ne_bytes([head[0], head[1]]));
            let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
            if event == zmq::SocketEvent::MONITOR_STOPPED {
                return;
            }
            if let Some(why) = verdict(event, value) {
                record(&endpoint, why);
            }
        })
        .map(|_| ())
        .map_err(|_| zmq::Error::ENOMEM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_remembered_until_a_login_succeeds() {
        let at = "tcp://test-handshake-1:1";
        assert_eq!(refused_by(at), None);
        let why = verdict(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH, 400).unwrap();
        record(at, why);
        assert!(refused_by(at).unwrap().contains("answered 400"));
        record(
            at,
            verdict(zmq::SocketEvent::HANDSHAKE_SUCCEEDED, 0).unwrap(),
        );
        assert_eq!(refused_by(at), None);
        assert_eq!(verdict(zmq::SocketEvent::CONNECTED, 0), None);
    }
}
