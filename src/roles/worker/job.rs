//! What every worker protocol shares (`pirate worker`, [`worker`](super) for Simple and
//! Paranoid Pirate, [`mdp`](super::mdp) for Majordomo): the config, the work
//! handed to a thread (the handler, a streamed `--exec`) and what comes back.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::faults::FaultPlan;
use crate::handler::{stream_command, Handler};
use crate::heartbeat::HeartbeatConfig;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::transport;

/// Which protocol the worker speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PirateProtocol {
    /// Simple Pirate: REQ, READY once, no heartbeats.
    Simple,
    /// Paranoid Pirate (6/PPP): DEALER, heartbeats, reconnect with back-off.
    Paranoid,
    /// Majordomo (7/MDP 0.1 or 18/MDP 0.2) worker for `WorkerConfig::service`.
    Majordomo(Version),
}

/// How a Simple or Paranoid Pirate worker spells READY (`--dialect`): 6/PPP's byte `0x01`, or
/// the word `"READY"` of the Guide's C++ queues (ppqueue.cpp registers a worker only on
/// `strcmp (msg.address (), "READY") == 0` and logs `E: invalid message` for `0x01`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadyDialect {
    /// 6/PPP's byte first; a Paranoid socket whose READY got no answer at all within the
    /// liveness window is followed by one in the other spelling, and a spelling the queue
    /// answered is kept (see [`worker`](super::worker)). Simple has no way to tell: bytes.
    #[default]
    Auto,
    /// Always 6/PPP's bytes (`--dialect rfc`).
    Rfc,
    /// Always the Guide's C++ words, `"READY"` and `"HEARTBEAT"` (`--dialect guide-cpp`).
    GuideCpp,
}

/// Everything a Simple or Paranoid Pirate worker needs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Guide: `tcp://localhost:5556`.
    pub endpoint: String,
    /// Majordomo only: more brokers to move to, in turn, after losing one (Binary Star).
    pub failover: Vec<String>,
    pub protocol: PirateProtocol,
    /// The Majordomo service to register for.
    pub service: String,
    /// Guide: 1s, liveness 3 (PPP); 2500ms, liveness 3 (MDP).
    pub heartbeat: HeartbeatConfig,
    /// Back-off after losing the queue (Guide: 1s doubling to 32s).
    pub reconnect: Duration,
    pub reconnect_max: Duration,
    /// Identity prefix; each socket gets `NAME-N-` and 32 random hex digits (unguessable:
    /// see [`crate::transport::random_identity`]). Defaults to `w<pid>`.
    pub name: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
    /// Sessions run side by side, each an ordinary worker with a socket of its own, so up to
    /// this many requests are worked on at once: 1..=[`MAX_CONCURRENCY`] (the CLI refuses
    /// anything else; the machine takes 0 as 1 and caps the rest).
    pub concurrency: usize,
    /// How READY is spelled (Simple and Paranoid only).
    pub dialect: ReadyDialect,
}

/// The most sessions one worker process runs (`--concurrency`): each is a socket, and a
/// request's `--exec` is a process, so the bound keeps file descriptors and processes sane.
pub const MAX_CONCURRENCY: usize = 1024;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            endpoint: "tcp://localhost:5556".into(),
            failover: Vec::new(),
            protocol: PirateProtocol::Paranoid,
            service: "echo".into(),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_secs(1),
                liveness: 3,
            },
            reconnect: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(32),
            name: format!("w{}", std::process::id()),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
            concurrency: 1,
            dialect: ReadyDialect::Auto,
        }
    }
}

/// What arrived from the queue or broker, whatever the protocol.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Heartbeat,
    Request {
        envelope: Vec<Frame>,
        body: Message,
    },
    /// MDP only: the broker asks us to go (we reconnect).
    Disconnect,
    /// MDP only, our extension: the broker lets this connection hold `credit` requests.
    Granted(u32),
    /// Malformed or unexpected: counted and dropped.
    Invalid(String),
}

/// Which request a job is for: the session that took it and the socket it came in on. A
/// reply computed for a socket since closed is dropped (its client has long retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The session's index (and slot).
    pub session: usize,
    /// The process-wide number of the socket the request came in on.
    pub generation: u64,
    /// Which of the session's lanes holds it: 0, or up to the credit a broker granted.
    pub lane: usize,
}

/// Work a worker machine hands to a thread: one request for the handler, or the next piece
/// of a streamed reply.
pub enum Job {
    Handle {
        ticket: Ticket,
        handler: Handler,
        body: Message,
        /// Stream `--exec` output line by line (MDP 0.2): every line but the last is a part.
        stream: bool,
    },
    /// Wait for the next line of a streaming command.
    Next { ticket: Ticket, rest: Stream },
}

/// What a finished [`Job`] hands back.
pub enum Done {
    /// The (final) reply.
    Reply { ticket: Ticket, reply: Message },
    /// One part of a streamed reply; more follows on `rest`.
    Partial {
        ticket: Ticket,
        part: Message,
        rest: Stream,
    },
}

/// The rest of a streaming command's output, line by line (`Err` holds the last line).
pub struct Stream(mpsc::Receiver<std::result::Result<Vec<u8>, Vec<u8>>>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Handle {
                ticket,
                body,
                stream,
                ..
            } => f
                .debug_struct("Handle")
                .field("ticket", ticket)
                .field("body", body)
                .field("stream", stream)
                .finish(),
            Job::Next { ticket, .. } => f.debug_struct("Next").field("ticket", ticket).finish(),
        }
    }
}

impl PartialEq for Job {
    /// Jobs compare by what they would do (tests); two streams never compare equal.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Job::Handle {
                    ticket: g1,
                    handler: h1,
                    body: b1,
                    stream: s1,
                },
                Job::Handle {
                    ticket: g2,
                    handler: h2,
                    body: b2,
                    stream: s2,
                },
            ) => (g1, h1, b1, s1) == (g2, h2, b2, s2),
            _ => false,
        }
    }
}

/// Runs one [`Job`] on a work thread (the reactor's `work` closure for every worker).
pub fn perform(job: Job) -> Done {
    match job {
        Job::Handle {
            ticket,
            handler: Handler::Exec(exec),
            body,
            stream: true,
        } => {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let last = stream_command(&exec, body, |line| {
                    let _ = tx.send(Ok(line));
                });
                let _ = tx.send(Err(last));
            });
            next(ticket, Stream(rx))
        }
        Job::Handle {
            ticket,
            handler,
            body,
            ..
        } => Done::Reply {
            ticket,
            reply: handler.handle(body),
        },
        Job::Next { ticket, rest } => next(ticket, rest),
    }
}

/// Waits for the next line of a streaming command.
fn next(ticket: Ticket, rest: Stream) -> Done {
    let line = |l: Vec<u8>| Message::from_frames(vec![l]);
    match rest.0.recv() {
        Ok(Ok(part)) => Done::Partial {
            ticket,
            part: line(part),
            rest,
        },
        Ok(Err(last)) => Done::Reply {
            ticket,
            reply: line(last),
        },
        // The command's thread died without a last line: an empty FINAL ends the reply.
        Err(_) => Done::Reply {
            ticket,
            reply: line(Vec::new()),
        },
    }
}

/// A fresh unguessable identity for socket number `n`: `NAME-N-<32 hex digits>`.
pub(crate) fn identity(name: &str, n: u64) -> Vec<u8> {
    transport::random_identity(&format!("{name}-{n}"))
}
