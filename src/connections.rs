//! The connection budget of every bound TCP socket: how many connections it keeps open (in all
//! and per peer address), how long a peer may take over its handshake, the descriptor limit
//! those numbers must fit in, and the count of connections refused.
//!
//! # Why
//!
//! A peer that opens TCP connections and completes the ZMTP greeting costs a role a descriptor
//! and about 23 KB each, for as long as it likes; past the descriptor limit libzmq 4.3.5 spun at
//! 100% of a core and accepted nobody (issue 21). libzmq has no budget of its own, so
//! `vendor/zmq-sys/patches/0002-tcp-listener-connection-budget.patch` adds one:
//! `ZMQ_MAX_CONNECTIONS` and `ZMQ_MAX_CONNECTIONS_PER_ADDRESS` per listener (a connection past
//! either is closed right after `accept`, before it has buffers), a reserve descriptor so that
//! running out of descriptors sheds the newcomer instead of spinning, and a process-wide
//! handler told of every refusal. `ZMQ_HANDSHAKE_IVL` (libzmq's own) drops a peer that
//! connects and never finishes its handshake, so half-open connections give their
//! descriptors back.
//!
//! # Process-wide
//!
//! Like `--max-message`, the budget is one setting for every socket of the process: the binary
//! sets it once ([`set_budget`]) and [`crate::transport::socket`] applies it ([`apply`]) to
//! every socket it makes; only sockets that bind TCP use the two limits.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

/// How long an accepted peer may take to finish its ZMTP handshake (greeting, security
/// handshake, READY) by default: libzmq's own default is 30 s, long enough for a half-open
/// flood to hold thousands of descriptors.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Descriptors kept out of the default budget for the role's own sockets (each ZeroMQ socket
/// holds an eventfd, the context its I/O threads' epoll and mailboxes), its files (titanic's
/// store, logs) and `--exec` children (three pipes each).
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The most TCP sockets a role binds that take connections (a queue's frontend and backend,
/// and a Binary Star node's state PUB): the descriptors left are shared by that many.
pub const BOUND_SOCKETS: u64 = 3;

/// The largest default `--max-connections`, whatever the descriptor limit: at ~23 KB per
/// connection (README, "Security and limits") 10,000 connections are ~230 MB per socket.
pub const DEFAULT_MAX_CAP: u32 = 10_000;

/// The default `--max-connections-per-address` is this fraction of `--max-connections`: one
/// address (one peer) can hold at most a quarter of a socket's connections.
pub const PER_ADDRESS_SHARE: u32 = 4;

/// What every bound TCP socket of the process allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Connections one bound socket keeps open at once (0: no limit).
    pub max: u32,
    /// Of those, connections from one peer IP address (0: no limit).
    pub per_address: u32,
    /// How long an accepted peer may take over its handshake.
    pub handshake: Duration,
}

impl Budget {
    /// The defaults for a process that may hold `descriptors` open: what is left after
    /// [`RESERVED_DESCRIPTORS`], shared by [`BOUND_SOCKETS`], at most [`DEFAULT_MAX_CAP`] and at
    /// least 1; per address a [`PER_ADDRESS_SHARE`]th of that.
    pub fn for_descriptors(descriptors: u64) -> Budget {
        let max = descriptors.saturating_sub(RESERVED_DESCRIPTORS) / BOUND_SOCKETS;
        let max = u32::try_from(max)
            .unwrap_or(u32::MAX)
            .clamp(1, DEFAULT_MAX_CAP);
        Budget {
            max,
            per_address: Self::default_per_address(max),
            handshake: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The default per-address limit for a socket limit of `max` (0, no limit, gives 0).
    pub fn default_per_address(max: u32) -> u32 {
        if max == 0 {
            0
        } else {
            max.div_ceil(PER_ADDRESS_SHARE)
        }
    }
}

/// The budget [`apply`] sets; all zero until [`set_budget`] (then libzmq's defaults apply: no
/// limits, a 30 s handshake).
static MAX: AtomicU32 = AtomicU32::new(0);
static PER_ADDRESS: AtomicU32 = AtomicU32::new(0);
static HANDSHAKE_MS: AtomicU32 = AtomicU32::new(0);

/// Sets the budget of sockets made from now on.
pub fn set_budget(budget: Budget) {
    MAX.store(budget.max, Ordering::Relaxed);
    PER_ADDRESS.store(budget.per_address, Ordering::Relaxed);
    let ms = u32::try_from(budget.handshake.as_millis()).unwrap_or(u32::MAX);
    HANDSHAKE_MS.store(ms.max(1), Ordering::Relaxed);
}

/// Gives `socket` the budget set with [`set_budget`], if one was.
pub(crate) fn apply(socket: &mut zmq::Socket) -> zmq::Result<()> {
    let handshake = HANDSHAKE_MS.load(Ordering::Relaxed);
    if handshake == 0 {
        return Ok(());
    }
    socket.set_handshake_ivl(i32::try_from(handshake).unwrap_or(i32::MAX))?;
    let raw = socket.as_mut_ptr();
    for (option, value) in [
        (zmq_sys::ZMQ_MAX_CONNECTIONS, MAX.load(Ordering::Relaxed)),
        (
            zmq_sys::ZMQ_MAX_CONNECTIONS_PER_ADDRESS,
            PER_ADDRESS.load(Ordering::Relaxed),
        ),
    ] {
        let value = i32::try_from(value).unwrap_or(i32::MAX);
        // SAFETY: `raw` is a live socket (borrowed mutably above) and the option takes an
        // int, passed by pointer with its size.
        let rc = unsafe {
            zmq_sys::zmq_setsockopt(
                raw,
                option as i32,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>(),
            )
        };
        if rc != 0 {
            return Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }));
        }
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (an unlimited hard limit: to 2^20) and
/// returns `(before, now)`. A process that cannot raise it keeps the soft limit (`now` ==
/// `before`).
pub fn raise_descriptor_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        limit.rlim_max
    };
    if target <= limit.rlim_cur {
        return Ok((before, before));
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok((before, before));
    }
    Ok((before, target))
}

/// Why a connection was refused (closed by the listener, or dropped during its handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The bound socket had `--max-connections` open.
    MaxConnections,
    /// The peer's address had `--max-connections-per-address` open.
    MaxConnectionsPerAddress,
    /// `accept` failed for lack of descriptors: the newcomer was accepted on the reserve
    /// descriptor and closed.
    NoDescriptors,
    /// The peer did not finish its handshake within `--handshake-timeout`.
    HandshakeTimeout,
}

impl Reason {
    #[cfg(test)]
    const ALL: [Reason; 4] = [
        Reason::MaxConnections,
        Reason::MaxConnectionsPerAddress,
        Reason::NoDescriptors,
        Reason::HandshakeTimeout,
    ];

    /// The name in traces and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Reason::MaxConnections => "max_connections",
            Reason::MaxConnectionsPerAddress => "max_connections_per_address",
            Reason::NoDescriptors => "no_descriptors",
            Reason::HandshakeTimeout => "handshake_timeout",
        }
    }

    /// The reason for one of the patch's codes (`ZMQ_ECONNLIMIT`…).
    fn from_code(code: i32) -> Option<Reason> {
        let code = u32::try_from(code).ok()?;
        Some(match code {
            zmq_sys::ZMQ_ECONNLIMIT => Reason::MaxConnections,
            zmq_sys::ZMQ_EADDRLIMIT => Reason::MaxConnectionsPerAddress,
            zmq_sys::ZMQ_ENOFDS => Reason::NoDescriptors,
            zmq_sys::ZMQ_EHANDSHAKE_TIMEOUT => Reason::HandshakeTimeout,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A connection refused, as traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The bound endpoint it reached (`tcp://127.0.0.1:5555`).
    pub endpoint: String,
    /// The peer's IP address.
    pub peer: String,
    pub reason: Reason,
    /// Connections refused so far in this process, this one included.
    pub total: u64,
}

/// Refused connections, in all and by reason: the `connections_refused` of a binding role's
/// summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RefusedConnections {
    pub total: u64,
    /// Past `--max-connections` of their bound socket.
    pub max_connections: u64,
    /// Past `--max-connections-per-address`.
    pub max_connections_per_address: u64,
    /// Shed because the process had no descriptor left to accept them with.
    pub no_descriptors: u64,
    /// Dropped for not finishing the handshake within `--handshake-timeout`.
    pub handshake_timeout: u64,
}

/// Refusals traced one by one; after these, one in every [`TRACE_EVERY`], so that a flood
/// cannot fill the log.
const TRACE_FIRST: u64 = 100;
const TRACE_EVERY: u64 = 1000;

static REFUSED: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];
static TOTAL: AtomicU64 = AtomicU64::new(0);
type Sink = Box<dyn Fn(&Refusal) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();
/// TCP binds made by this process: a role that bound one reports its refusals.
static TCP_BINDS: AtomicU64 = AtomicU64::new(0);

/// Where refusals are traced (the binary renders them under `-v`); set once, before any bind.
pub fn on_refusal(sink: impl Fn(&Refusal) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Connections refused so far in this process, by reason.
pub fn refused() -> RefusedConnections {
    let count = |r: Reason| REFUSED[r.index()].load(Ordering::Relaxed);
    RefusedConnections {
        total: TOTAL.load(Ordering::Relaxed),
        max_connections: count(Reason::MaxConnections),
        max_connections_per_address: count(Reason::MaxConnectionsPerAddress),
        no_descriptors: count(Reason::NoDescriptors),
        handshake_timeout: count(Reason::HandshakeTimeout),
    }
}

/// [`refused`], if this process bound a TCP socket (else it has nothing to refuse).
pub fn summary() -> Option<RefusedConnections> {
    (TCP_BINDS.load(Ordering::Relaxed) > 0).then(refused)
}

/// Notes that `endpoint` is about to be bound (see [`summary`]).
pub(crate) fn note_bind(endpoint: &str) {
    if endpoint.starts_with("tcp://") {
        TCP_BINDS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a refusal and traces it (bounded).
fn count(endpoint: &str, peer: &str, reason: Reason) {
    REFUSED[reason.index()].fetch_add(1, Ordering::Relaxed);
    let total = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
    if total <= TRACE_FIRST || total.is_multiple_of(TRACE_EVERY) {
        if let Some(sink) = SINK.get() {
            sink(&Refusal {
                endpoint: endpoint.to_string(),
                peer: peer.to_string(),
                reason,
                total,
            });
        }
    }
}

/// The patch's refusal handler: runs on a libzmq I/O thread, so it only counts and hands the
/// trace to the sink (which must not block for long).
unsafe extern "C" fn on_libzmq_refusal(
    bound: *const std::os::raw::c_char,
    peer: *const std::os::raw::c_char,
    code: std::os::raw::c_int,
) {
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: libzmq passes NUL-terminated strings that live for the call.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    if let Some(reason) = Reason::from_code(code) {
        count(&text(bound), &text(peer), reason);
    }
}

/// Installs the refusal handler in libzmq; [`crate::transport::context`] calls it once, before
/// the process's context (and so any I/O thread) exists, as the patch requires.
pub(crate) fn install_handler() {
    // SAFETY: a plain store of a function pointer, before any I/O thread reads it.
    unsafe { zmq_sys::zmq_set_refusal_handler(Some(on_libzmq_refusal)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_leaves_room_and_is_capped() {
        // 1024 descriptors: 768 after the reserve, 256 per socket, 64 per address.
        let b = Budget::for_descriptors(1024);
        assert_eq!((b.max, b.per_address), (256, 64));
        assert_eq!(b.handshake, DEFAULT_HANDSHAKE_TIMEOUT);
        // The three sockets together stay below the limit, with the reserve left.
        assert!(u64::from(b.max) * BOUND_SOCKETS + RESERVED_DESCRIPTORS <= 1024);
        assert_eq!(Budget::for_descriptors(1 << 20).max, DEFAULT_MAX_CAP);
        assert_eq!(Budget::for_descriptors(1 << 20).per_address, 2500);
        // Fewer descriptors than the reserve: one connection, never "no limit".
        assert_eq!(Budget::for_descriptors(100).max, 1);
        assert_eq!(Budget::for_descriptors(100).per_address, 1);
        assert_eq!(Budget::default_per_address(0), 0);
        assert_eq!(Budget::default_per_address(5), 2);
    }

    #[test]
    fn every_code_of_the_patch_has_a_reason_and_nothing_else_does() {
        for reason in Reason::ALL {
            let code = match reason {
                Reason::MaxConnections => zmq_sys::ZMQ_ECONNLIMIT,
                Reason::MaxConnectionsPerAddress => zmq_sys::ZMQ_EADDRLIMIT,
                Reason::NoDescriptors => zmq_sys::ZMQ_ENOFDS,
                Reason::HandshakeTimeout => zmq_sys::ZMQ_EHANDSHAKE_TIMEOUT,
            };
            assert_eq!(Reason::from_code(code as i32), Some(reason));
        }
        assert_eq!(Reason::from_code(libc::EMFILE), None);
        assert_eq!(Reason::from_code(-1), None);
    }

    #[test]
    fn the_descriptor_limit_is_raised_to_the_hard_limit() {
        let (before, now) = raise_descriptor_limit().unwrap();
        assert!(now >= before);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(limit.rlim_cur, now);
    }

    /// Whether the peer closed `stream`: EOF or a reset before its silence outlasts 500 ms.
    fn closed_by_peer(mut stream: &std::net::TcpStream) -> bool {
        use std::io::Read;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }

    /// A listener with a budget refuses past it, and the handler counts why (libzmq, through
    /// the patch; the binary's behaviour is tested in tests/flood.rs).
    #[test]
    fn a_listener_refuses_past_its_budget_and_says_why() {
        crate::transport::context(); // installs the handler
        let ctx = zmq::Context::new();
        let mut router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        let raw = router.as_mut_ptr();
        let two: i32 = 2;
        let rc = unsafe {
            zmq_sys::zmq_setsockopt(
                raw,
                zmq_sys::ZMQ_MAX_CONNECTIONS as i32,
                (&two as *const i32).cast(),
                4,
            )
        };
        assert_eq!(rc, 0);
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let port = endpoint.rsplit(':').next().unwrap();
        let before = refused().max_connections;
        let streams: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap())
            .collect();
        // Exactly one of the three is closed by the listener: its read ends (EOF or reset).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while refused().max_connections == before {
            assert!(std::time::Instant::now() < deadline, "no refusal counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The refused one was reset; the others are open (they sent their greeting and wait).
        let closed = streams.iter().filter(|s| closed_by_peer(s)).count();
        assert_eq!(closed, 1, "one connection past the limit is closed");
    }
}
