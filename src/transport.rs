//! The only place sockets are made: one ZeroMQ context, sockets with LINGER 0, identities,
//! bind/connect with errors a user can act on, and traced send/receive of whole messages.

use crate::error::{Error, Result};
use crate::event::{Direction, Events};
use crate::msg::Message;

/// A socket with a name used in traces and errors (`frontend`, `backend`, `broker`…).
pub struct Socket {
    inner: zmq::Socket,
    name: &'static str,
}

/// Creates a socket of `kind` with LINGER 0, so closing it never blocks on unsent messages
/// (the Lazy Pirate reconnect and every shutdown depend on that), and an optional identity.
pub fn socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    name: &'static str,
    identity: Option<&[u8]>,
) -> Result<Socket> {
    let inner = ctx
        .socket(kind)
        .map_err(|e| Error::zmq("cannot create a socket", e))?;
    inner
        .set_linger(0)
        .map_err(|e| Error::zmq("cannot set LINGER", e))?;
    if let Some(id) = identity {
        inner
            .set_identity(id)
            .map_err(|e| Error::zmq("cannot set the socket identity", e))?;
    }
    Ok(Socket { inner, name })
}

/// Explains a bind failure in words a user can act on.
fn bind_reason(err: zmq::Error) -> String {
    match err {
        zmq::Error::EADDRINUSE => "address already in use (is another pirate or ZeroMQ program \
                                   running there? pick another port)"
            .to_string(),
        zmq::Error::EADDRNOTAVAIL => {
            "address not available on this machine (use * or a local address)".to_string()
        }
        zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT => {
            "not a valid endpoint (expected e.g. tcp://*:5555 or ipc:///tmp/pirate)".to_string()
        }
        zmq::Error::EACCES => "permission denied (ports below 1024 need privileges)".to_string(),
        other => other.to_string(),
    }
}

impl Socket {
    /// Binds to `endpoint`.
    pub fn bind(&self, endpoint: &str) -> Result<()> {
        self.inner.bind(endpoint).map_err(|e| Error::Bind {
            endpoint: endpoint.to_string(),
            reason: bind_reason(e),
        })
    }

    /// Connects to `endpoint` (ZeroMQ connects in the background; this only checks syntax).
    pub fn connect(&self, endpoint: &str) -> Result<()> {
        self.inner.connect(endpoint).map_err(|e| {
            Error::Usage(format!(
                "cannot connect to {endpoint}: {} (expected e.g. tcp://localhost:5555)",
                match e {
                    zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT =>
                        "not a valid endpoint".to_string(),
                    other => other.to_string(),
                }
            ))
        })
    }

    /// The socket's name in traces.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The underlying ZeroMQ socket, for polling.
    pub fn raw(&self) -> &zmq::Socket {
        &self.inner
    }

    /// True if a message is waiting, after waiting at most `timeout_ms`.
    pub fn poll_in(&self, timeout_ms: i64) -> Result<bool> {
        let mut items = [self.inner.as_poll_item(zmq::POLLIN)];
        match zmq::poll(&mut items, timeout_ms) {
            Ok(_) => Ok(items[0].is_readable()),
            // A signal interrupted the poll: let the caller look at the stop flag.
            Err(zmq::Error::EINTR) => Ok(false),
            Err(e) => Err(Error::zmq("poll failed", e)),
        }
    }

    /// Sends a whole message, tracing it under `-v`.
    pub fn send(&self, msg: Message, events: &mut Events) -> Result<()> {
        events.frame(self.name, Direction::Out, &msg);
        self.inner
            .send_multipart(msg.into_frames(), 0)
            .map_err(|e| Error::zmq(&format!("cannot send on {}", self.name), e))
    }

    /// Receives a whole message (blocking; poll first), tracing it under `-v`.
    pub fn recv(&self, events: &mut Events) -> Result<Message> {
        loop {
            match self.inner.recv_multipart(0) {
                Ok(frames) => {
                    let msg = Message::from(frames);
                    events.frame(self.name, Direction::In, &msg);
                    return Ok(msg);
                }
                Err(zmq::Error::EINTR) => crate::shutdown::check()?,
                Err(e) => return Err(Error::zmq(&format!("cannot receive on {}", self.name), e)),
            }
        }
    }
}

/// Wakes a socket loop blocked in `zmq::poll` when a work thread finishes: the loop polls
/// [`Wakeup::socket`] beside its own sockets, the thread calls [`Notifier::notify`]. Without it
/// the loop would have to poll in short slices and add their length to every reply's latency.
pub struct Wakeup {
    pull: Socket,
    ctx: zmq::Context,
    endpoint: String,
}

/// The sending half of a [`Wakeup`]; cheap to clone into work threads.
#[derive(Clone)]
pub struct Notifier {
    ctx: zmq::Context,
    endpoint: String,
}

impl Wakeup {
    /// A wake-up channel in `ctx` (inproc, so the notifier must share the context).
    pub fn new(ctx: &zmq::Context) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://pirate-wakeup-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pull = socket(ctx, zmq::PULL, "wakeup", None)?;
        pull.inner
            .bind(&endpoint)
            .map_err(|e| Error::zmq("cannot bind the wake-up socket", e))?;
        Ok(Wakeup {
            pull,
            ctx: ctx.clone(),
            endpoint,
        })
    }

    /// A notifier for a work thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            ctx: self.ctx.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// The socket to poll for readability.
    pub fn socket(&self) -> &Socket {
        &self.pull
    }

    /// Reads every pending wake-up, so the next poll blocks again.
    pub fn drain(&self) {
        while self.pull.inner.recv_bytes(zmq::DONTWAIT).is_ok() {}
    }
}

impl Notifier {
    /// Wakes the loop. Failures are ignored: the loop also wakes on its own timers.
    pub fn notify(&self) {
        if let Ok(push) = self.ctx.socket(zmq::PUSH) {
            // A short linger lets the one-byte message reach the loop before the socket goes.
            let _ = push.set_linger(100);
            if push.connect(&self.endpoint).is_ok() {
                let _ = push.send(&b"!"[..], zmq::DONTWAIT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifier_wakes_a_poll_from_another_thread() {
        let ctx = zmq::Context::new();
        let wakeup = Wakeup::new(&ctx).unwrap();
        assert!(!wakeup.socket().poll_in(0).unwrap());
        let notifier = wakeup.notifier();
        std::thread::spawn(move || notifier.notify())
            .join()
            .unwrap();
        assert!(wakeup.socket().poll_in(1000).unwrap());
        wakeup.drain();
        assert!(!wakeup.socket().poll_in(0).unwrap());
    }

    #[test]
    fn binding_a_used_port_names_the_endpoint_and_the_cause() {
        let ctx = zmq::Context::new();
        let a = socket(&ctx, zmq::ROUTER, "a", None).unwrap();
        a.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = a.raw().get_last_endpoint().unwrap().unwrap();
        let b = socket(&ctx, zmq::ROUTER, "b", None).unwrap();
        let err = b.bind(&endpoint).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&endpoint), "{text}");
        assert!(text.contains("address already in use"), "{text}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_bad_endpoint_is_a_usage_error() {
        let ctx = zmq::Context::new();
        let s = socket(&ctx, zmq::REQ, "client", None).unwrap();
        let err = s.connect("nonsense").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("nonsense"));
    }

    #[test]
    fn send_and_receive_whole_messages() {
        let ctx = zmq::Context::new();
        let a = socket(&ctx, zmq::PAIR, "a", None).unwrap();
        a.bind("inproc://t").unwrap();
        let b = socket(&ctx, zmq::PAIR, "b", None).unwrap();
        b.connect("inproc://t").unwrap();
        let mut ev = Events::discard();
        let m = Message::from_frames(vec![b"x".to_vec(), vec![], b"y".to_vec()]);
        a.send(m.clone(), &mut ev).unwrap();
        assert!(b.poll_in(1000).unwrap());
        assert_eq!(b.recv(&mut ev).unwrap(), m);
    }
}
