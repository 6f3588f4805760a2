//! The only place sockets are made: one ZeroMQ context, sockets with LINGER 0, unguessable
//! identities, a maximum message size, bind/connect with errors a user can act on (and the
//! security installed by [`crate::auth`] through [`set_security`], applied before each), and traced send/receive of whole
//! messages.
//!
//! # Identities
//!
//! Left to itself, libzmq names an anonymous peer `0x00` + a 32-bit counter that starts at the
//! same value in every process (its `rand()` is never seeded), and `pirate` used to name its
//! workers `w<pid>-N`. Anyone on the network could then guess the identity a client or worker
//! would have next: connect with a timed-out client's identity and receive its late reply, or
//! claim a worker's next identity first so that the ROUTER refuses the worker when it
//! reconnects. So every socket made here that can be routed to (REQ, REP, DEALER, ROUTER) gets
//! an identity of 128 bits from the operating system's generator (not from the run's `--seed`
//! generator: a replayed run must not replay identities), written as 32 lowercase hex digits so
//! that it is printable (the Guide's C++ examples mangle binary identities), optionally after
//! a readable prefix (`--name`): `NAME-N-0123…cdef`.
//!
//! # Maximum message size
//!
//! `ZMQ_MAXMSGSIZE` is set on every socket ([`set_max_message`], `--max-message`, default
//! [`DEFAULT_MAX_MESSAGE`]). libzmq checks it per frame as the frame arrives and drops the
//! connection of a peer that sends a bigger one, before the frame is buffered, so one
//! connection cannot make a role allocate more than that per frame.
//!
//! # Connection budget
//!
//! Every socket also gets the process's [`crate::connections`] budget (`--max-connections`,
//! `--max-connections-per-address`, `--handshake-timeout`), which bound TCP sockets enforce.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::event::{Direction, Events};
use crate::msg::{Frame, Message};

/// A socket with a name used in traces and errors (`frontend`, `backend`, `broker`…).
pub struct Socket {
    inner: zmq::Socket,
    name: &'static str,
    /// Its context, where a bind starts the ZAP handler (see [`crate::auth`]).
    ctx: zmq::Context,
}

/// Frames up to this many bytes are copied into ZeroMQ on send, bigger ones moved (see
/// [`Socket::send_frames`]).
const COPY_BELOW: usize = 1024;

/// The default largest frame a socket accepts: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 20;

/// The process-wide `ZMQ_MAXMSGSIZE`. Process-wide on purpose: it is one limit for every
/// socket of every role (the binary sets it once from `--max-message`), and the library's own
/// clients and workers (`MdpClient`, `MdpWorker`) get it without a setting of their own.
static MAX_MESSAGE: AtomicU64 = AtomicU64::new(DEFAULT_MAX_MESSAGE);

/// Sets the largest frame, in bytes, that sockets made from now on accept (at least 1).
pub fn set_max_message(bytes: u64) {
    MAX_MESSAGE.store(bytes.max(1), Ordering::Relaxed);
}

/// The largest frame sockets accept (see [`set_max_message`]). Roles use it to bound what
/// they produce too (an `--exec` command's output), since a bigger frame would be refused.
pub fn max_message() -> u64 {
    MAX_MESSAGE.load(Ordering::Relaxed)
}

/// Bytes of randomness in an identity: 128 bits.
const IDENTITY_BITS: usize = 128;

/// A fresh unguessable identity: `PREFIX-` (if any) then 32 hex digits of 128 bits from the
/// operating system's generator. The prefix is cut (at a character boundary) so that the
/// whole identity fits ZeroMQ's 255 bytes.
pub fn random_identity(prefix: &str) -> Vec<u8> {
    let random = format!("{:032x}", rand::random::<u128>());
    debug_assert_eq!(random.len() * 4, IDENTITY_BITS);
    if prefix.is_empty() {
        return random.into_bytes();
    }
    let room = 255 - random.len() - 1;
    let mut cut = prefix.len().min(room);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{random}", &prefix[..cut]).into_bytes()
}

/// The process's one ZeroMQ context, made on first use. One context, so that inproc
/// endpoints (wake-ups, the ZAP handler) reach every socket of the process.
pub fn context() -> zmq::Context {
    static CONTEXT: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            // Before the context's I/O threads exist, as libzmq's patch 0002 requires.
            crate::connections::install_handler();
            zmq::Context::new()
        })
        .clone()
}

/// True for socket types that peers route to by identity.
fn routable(kind: zmq::SocketType) -> bool {
    matches!(kind, zmq::REQ | zmq::REP | zmq::DEALER | zmq::ROUTER)
}

/// Creates a socket of `kind` with LINGER 0, so closing it never blocks on unsent messages
/// (the Lazy Pirate reconnect and every shutdown depend on that), `ZMQ_MAXMSGSIZE`, and an
/// identity: `identity` if given (a Freelance server's endpoint, a worker's prefixed random
/// one), else a fresh [`random_identity`] for routable types.
pub fn socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    name: &'static str,
    identity: Option<&[u8]>,
) -> Result<Socket> {
    let mut inner = ctx
        .socket(kind)
        .map_err(|e| Error::zmq("cannot create a socket", e))?;
    crate::connections::apply(&mut inner)
        .map_err(|e| Error::zmq("cannot set the connection budget", e))?;
    inner
        .set_linger(0)
        .map_err(|e| Error::zmq("cannot set LINGER", e))?;
    let max = i64::try_from(max_message()).unwrap_or(i64::MAX);
    inner
        .set_maxmsgsize(max)
        .map_err(|e| Error::zmq("cannot set MAXMSGSIZE", e))?;
    let generated;
    let identity = match identity {
        Some(id) => Some(id),
        None if routable(kind) => {
            generated = random_identity("");
            Some(generated.as_slice())
        }
        None => None,
    };
    if let Some(id) = identity {
        inner
            .set_identity(id)
            .map_err(|e| Error::zmq("cannot set the socket identity", e))?;
    }
    Ok(Socket {
        inner,
        name,
        ctx: ctx.clone(),
    })
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
        // libzmq reads a bind host that is not an address as an interface name (`tcp://eth0:5555`)
        // and says ENODEV, "No such device", when there is none by that name: host names are
        // for connecting, not binding.
        zmq::Error::ENODEV => "no interface or local address of that name (bind takes *, an IP \
                               address of this machine, or an interface name such as eth0; host \
                               names are for --connect)"
            .to_string(),
        other => other.to_string(),
    }
}

/// What the process's security does to a socket before it binds or connects: set by
/// [`crate::auth::install`], once; without it sockets are plain ZeroMQ. A hook rather than a
/// call into `auth`, so that the socket layer stays below the ZAP handler, which is itself a
/// machine on a reactor and so built on these sockets.
pub trait Security: Send + Sync {
    /// Before `socket` (made in `ctx`) binds `endpoint`.
    fn before_bind(&self, ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> Result<()>;
    /// Before `socket` connects to `endpoint`.
    fn before_connect(&self, socket: &zmq::Socket, endpoint: &str) -> Result<()>;
}

static SECURITY: std::sync::OnceLock<Box<dyn Security>> = std::sync::OnceLock::new();

/// Installs the process's [`Security`]; an error if one was installed already.
pub fn set_security(security: Box<dyn Security>) -> Result<()> {
    SECURITY
        .set(security)
        .map_err(|_| Error::Internal("the security policy was installed twice".into()))
}

impl Socket {
    /// Binds to `endpoint`.
    pub fn bind(&self, endpoint: &str) -> Result<()> {
        if let Some(security) = SECURITY.get() {
            security.before_bind(&self.ctx, &self.inner, endpoint)?;
        }
        crate::connections::note_bind(endpoint);
        self.inner.bind(endpoint).map_err(|e| Error::Bind {
            endpoint: endpoint.to_string(),
            reason: bind_reason(e),
        })
    }

    /// Connects to `endpoint` (ZeroMQ connects in the background; this only checks syntax).
    pub fn connect(&self, endpoint: &str) -> Result<()> {
        if let Some(security) = SECURITY.get() {
            security.before_connect(&self.inner, endpoint)?;
            // A socket that logs in (PLAIN, CURVE) learns of a refusal only through its
            // monitor: watched, so the role can say so (see crate::handshake).
            let logs_in = self
                .inner
                .get_mechanism()
                .is_ok_and(|m| m != zmq::Mechanism::ZMQ_NULL);
            if logs_in {
                crate::handshake::watch(&self.ctx, &self.inner, endpoint)
                    .map_err(|e| Error::zmq("cannot monitor the socket's handshake", e))?;
            }
        }
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

    /// The socket's `ZMQ_FD`: readable when the socket may have work (a message, a command)
    /// since it was last read until `EAGAIN`. Edge-triggered, so the reactor polls it only
    /// after it drained the socket, and drains it again after every send on it (a send may
    /// consume the command that announced a message).
    pub(crate) fn fd(&self) -> Result<std::os::fd::RawFd> {
        self.inner
            .get_fd()
            .map_err(|e| Error::zmq("cannot get the socket's ZMQ_FD", e))
    }

    /// Makes a ROUTER refuse to send to a peer that is not connected (ROUTER_MANDATORY), and
    /// lets a peer that reconnects take its identity back at once (ROUTER_HANDOVER).
    pub fn make_mandatory(&self) -> Result<()> {
        self.inner
            .set_router_mandatory(true)
            .map_err(|e| Error::zmq("cannot set ROUTER_MANDATORY", e))?;
        self.inner
            .set_router_handover(true)
            .map_err(|e| Error::zmq("cannot set ROUTER_HANDOVER", e))
    }

    /// Sends a whole message without blocking; false when its peer is not connected
    /// (`EHOSTUNREACH` under ROUTER_MANDATORY) or not accepting (`EAGAIN`): then it is
    /// dropped. Traced under `-v` only once it went out.
    pub fn send_routed(&self, msg: Message, events: &mut Events) -> Result<bool> {
        // Kept for the trace only when there is one: the frames move into ZeroMQ.
        let traced = events.tracing().then(|| msg.clone());
        match self.send_frames(msg, zmq::DONTWAIT) {
            Ok(()) => {
                if let Some(traced) = traced {
                    events.frame(self.name, Direction::Out, &traced);
                }
                Ok(true)
            }
            Err(zmq::Error::EHOSTUNREACH) | Err(zmq::Error::EAGAIN) => Ok(false),
            Err(e) => Err(Error::zmq(&format!("cannot send on {}", self.name), e)),
        }
    }

    /// Sends a whole message without blocking, or gives it back untouched when the socket
    /// takes nothing now (`EAGAIN`: a DEALER or REQ whose peers' queues are full, or that has
    /// no peer), for the caller to send later. The first frame is always copied, never moved,
    /// so that a refused message comes back whole; once it is taken libzmq takes the rest
    /// (its high-water mark counts whole messages). A message cut off by its peer's pipe
    /// closing between two frames (`EFAULT`: libzmq drops it whole, `lb.cpp`, `sendpipe`) is
    /// gone, like one the network lost. Traced under `-v` once it went out.
    pub fn try_send(&self, msg: Message, events: &mut Events) -> Result<Option<Message>> {
        let traced = events.tracing().then(|| msg.clone());
        let mut frames = msg.into_frames();
        if frames.is_empty() {
            return Ok(None);
        }
        let rest = frames.split_off(1);
        let flags = if rest.is_empty() {
            zmq::DONTWAIT
        } else {
            zmq::DONTWAIT | zmq::SNDMORE
        };
        loop {
            match self.inner.send(frames[0].as_slice(), flags) {
                Ok(()) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(zmq::Error::EAGAIN) => {
                    frames.extend(rest);
                    return Ok(Some(Message::from(frames)));
                }
                Err(e) => return Err(Error::zmq(&format!("cannot send on {}", self.name), e)),
            }
        }
        match self.send_frames(Message::from(rest), zmq::DONTWAIT) {
            Ok(()) => {
                if let Some(traced) = traced {
                    events.frame(self.name, Direction::Out, &traced);
                }
                Ok(None)
            }
            Err(zmq::Error::EFAULT) | Err(zmq::Error::EAGAIN) => Ok(None),
            Err(e) => Err(Error::zmq(&format!("cannot send on {}", self.name), e)),
        }
    }

    /// Sends a whole message, tracing it under `-v`, blocking while no peer takes it (never
    /// on a reactor: see `reactor`'s "Sends never block").
    pub fn send(&self, msg: Message, events: &mut Events) -> Result<()> {
        events.frame(self.name, Direction::Out, &msg);
        self.send_frames(msg, 0)
            .map_err(|e| Error::zmq(&format!("cannot send on {}", self.name), e))
    }

    /// Hands every frame of `msg` to ZeroMQ, all but the last with `SNDMORE`. A frame of at
    /// most [`COPY_BELOW`] bytes is copied into a ZeroMQ message (up to 33 bytes that is
    /// storage inside the message itself, no allocation at all); a bigger one is moved, its
    /// buffer handed over without a copy (which costs ZeroMQ an allocation of its own).
    fn send_frames(&self, msg: Message, flags: i32) -> zmq::Result<()> {
        let mut frames = msg.into_frames().into_iter().peekable();
        while let Some(frame) = frames.next() {
            let flags = if frames.peek().is_some() {
                flags | zmq::SNDMORE
            } else {
                flags
            };
            if frame.len() <= COPY_BELOW {
                // A signal (Ctrl-C) arriving while libzmq checks its commands fails the send
                // with EINTR before the frame is taken: send it again, as `recv` does, so the
                // loop sees its stop and ends with 130 rather than a send error. (A moved
                // frame is gone with a failed send: that rarer case still fails.)
                loop {
                    match self.inner.send(frame.as_slice(), flags) {
                        Err(zmq::Error::EINTR) => continue,
                        sent => break sent?,
                    }
                }
            } else {
                self.inner.send(zmq::Message::from(frame), flags)?;
            }
        }
        Ok(())
    }

    /// Subscribes a SUB socket to every message.
    pub fn subscribe_all(&self) -> Result<()> {
        self.inner
            .set_subscribe(b"")
            .map_err(|e| Error::zmq("cannot subscribe", e))
    }

    /// One whole message's frames: the first with `flags` (`DONTWAIT` or blocking), the
    /// rest at once (ZeroMQ delivers a message's frames together). One ZeroMQ message is
    /// reused for every frame, and `ZMQ_RCVMORE` is read from it, not asked of the socket.
    fn recv_frames(&self, flags: i32) -> zmq::Result<Vec<Frame>> {
        let mut part = zmq::Message::new();
        self.inner.recv(&mut part, flags)?;
        let mut frames = Vec::with_capacity(8);
        frames.push(part.to_vec());
        while part.get_more() {
            self.inner.recv(&mut part, 0)?;
            frames.push(part.to_vec());
        }
        Ok(frames)
    }

    /// Receives a whole message if one is waiting, without blocking, tracing it under `-v`.
    pub fn try_recv(&self, events: &mut Events) -> Result<Option<Message>> {
        match self.recv_frames(zmq::DONTWAIT) {
            Ok(frames) => {
                let msg = Message::from(frames);
                events.frame(self.name, Direction::In, &msg);
                Ok(Some(msg))
            }
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => Ok(None),
            Err(e) => Err(Error::zmq(&format!("cannot receive on {}", self.name), e)),
        }
    }

    /// Receives a whole message (blocking; poll first), tracing it under `-v`.
    pub fn recv(&self, events: &mut Events) -> Result<Message> {
        loop {
            match self.recv_frames(0) {
                Ok(frames) => {
                    let msg = Message::from(frames);
                    events.frame(self.name, Direction::In, &msg);
                    return Ok(msg);
                }
                // A signal: the message the poll saw is still there (the loop looks at its stop).
                Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(Error::zmq(&format!("cannot receive on {}", self.name), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next whole message on `socket` within `ms` milliseconds, if one comes.
    fn recv_within(socket: &Socket, ms: i32) -> Option<Message> {
        socket.inner.set_rcvtimeo(ms).unwrap();
        socket.recv_frames(0).ok().map(Message::from)
    }

    #[test]
    fn binding_a_used_port_names_the_endpoint_and_the_cause() {
        let ctx = zmq::Context::new();
        let a = socket(&ctx, zmq::ROUTER, "a", None).unwrap();
        a.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = a.inner.get_last_endpoint().unwrap().unwrap();
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
    fn identities_are_printable_random_and_fit() {
        let a = random_identity("");
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_identity(""), "two draws never agree");
        let named = random_identity("worker-1");
        assert!(named.starts_with(b"worker-1-"));
        assert_eq!(named.len(), "worker-1-".len() + 32);
        // A prefix too long for 255 bytes is cut, at a character boundary.
        let long = random_identity(&"é".repeat(200));
        assert!(long.len() <= 255);
        assert!(String::from_utf8(long).is_ok());
    }

    #[test]
    fn sockets_get_an_unguessable_identity_unless_given_one() {
        let ctx = zmq::Context::new();
        let router = socket(&ctx, zmq::ROUTER, "router", None).unwrap();
        router.bind("inproc://ids").unwrap();
        let mut ev = Events::discard();
        let mut seen = Vec::new();
        for given in [None, None, Some(&b"chosen"[..])] {
            let dealer = socket(&ctx, zmq::DEALER, "dealer", given).unwrap();
            dealer.connect("inproc://ids").unwrap();
            dealer
                .send(Message::from_frames(vec![b"hi".to_vec()]), &mut ev)
                .unwrap();
            let id = recv_within(&router, 1000).unwrap().pop_front().unwrap();
            seen.push(id);
        }
        for id in &seen[..2] {
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id.iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        assert_ne!(seen[0], seen[1]);
        assert_eq!(seen[2], b"chosen");
    }

    #[test]
    fn a_frame_over_the_maximum_drops_the_peer() {
        let ctx = zmq::Context::new();
        // The default limit, checked without changing the process-wide value other tests use.
        assert_eq!(max_message(), DEFAULT_MAX_MESSAGE);
        let server = socket(&ctx, zmq::ROUTER, "server", None).unwrap();
        server.inner.set_maxmsgsize(1000).unwrap();
        server.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = server.inner.get_last_endpoint().unwrap().unwrap();
        let mut ev = Events::discard();
        let big = socket(&ctx, zmq::DEALER, "big", None).unwrap();
        big.connect(&endpoint).unwrap();
        big.send(Message::from_frames(vec![vec![0u8; 2000]]), &mut ev)
            .unwrap();
        let small = socket(&ctx, zmq::DEALER, "small", None).unwrap();
        small.connect(&endpoint).unwrap();
        small
            .send(Message::from_frames(vec![vec![1u8; 10]]), &mut ev)
            .unwrap();
        let got = recv_within(&server, 2000).expect("the small one arrives");
        assert_eq!(
            got.get(1),
            Some(&[1u8; 10][..]),
            "only the small one arrives"
        );
        assert_eq!(recv_within(&server, 200), None);
    }

    #[test]
    fn send_and_receive_whole_messages() {
        // Small frames are copied on send, big ones moved: both arrive whole, in order.
        let ctx = zmq::Context::new();
        let a = socket(&ctx, zmq::PAIR, "a", None).unwrap();
        a.bind("inproc://t").unwrap();
        let b = socket(&ctx, zmq::PAIR, "b", None).unwrap();
        b.connect("inproc://t").unwrap();
        let mut ev = Events::discard();
        let m = Message::from_frames(vec![
            b"x".to_vec(),
            vec![],
            vec![7u8; COPY_BELOW + 1],
            vec![8u8; COPY_BELOW],
            b"y".to_vec(),
        ]);
        a.send(m.clone(), &mut ev).unwrap();
        assert_eq!(recv_within(&b, 1000), Some(m));
    }
}
