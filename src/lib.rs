//! `pirate`: reliable request-reply over ZeroMQ, the Guide's Pirate patterns (chapter 4) as one
//! library and one command-line tool.
//!
//! The library is the protocol core and the roles; it knows nothing of the command line or
//! the terminal. Every role has the same shape: a `Config` in, its protocol logic as a pure
//! [`reactor::Machine`] (`handle(input, now)`, `tick(now)`, `next_deadline()`), driven by the
//! one event loop, [`reactor::run`], and `run(config, stop, events)` emitting
//! [`event::Event`]s while it works, a [`event::Report`] out. A new role is one machine and
//! one thin `run` (see `roles::server`), plus one arm in the binary's `dispatch()`
//! (`src/bin/pirate/main.rs`).
//!
//! Layout:
//! - [`error`]: one error enum and the exit code each kind maps to.
//! - [`endpoint`]: endpoint syntax, checked before anything starts.
//! - [`msg`]: owned multipart message, envelope helpers, the Guide's frame dump.
//! - [`reactor`]: the one event loop: sockets by slot, polling (the only poll of the roles),
//!   deadlines, work threads, the [`reactor::Stop`] value (the one stop signal: made by the
//!   binary, raised by Ctrl-C, no process-wide flag); drains every ready message (up to 256
//!   per socket per pass) before it sends, and blocks only once nothing is left.
//! - [`transport`]: the only place sockets are made (LINGER 0, identities, clear bind errors);
//!   security reaches it through its `Security` hook, which [`auth::install`] sets.
//! - [`connections`]: the connection budget of bound TCP sockets (limits, handshake timeout,
//!   descriptor limit) and the count of connections refused, through libzmq patch 0002.
//! - [`auth`]: ZAP authentication for binds (the ZAP handler is a machine on a reactor thread
//!   of its own, `auth::zap`), PLAIN/CURVE credentials for connects.
//! - [`faults`]: seeded crash / overload / freeze injection shared by every working role.
//! - [`proto`]: pure codecs, one per RFC (6/PPP, 7/MDP and 18/MDP, 8/MMI, 10/FLP), request
//!   ids in reply envelopes (`correlate`), and 9/TSP's vocabulary (`proto::tsp`: the service
//!   names, the statuses, the request's `Uuid`).
//! - [`heartbeat`], [`backoff`]: pure liveness and reconnect state machines; every role that
//!   decides a peer is dead (queue, broker, workers, Freelance client, Binary Star, the proxy)
//!   decides it with [`heartbeat::Liveness`]; [`link`]: a worker's connection to its queue or
//!   broker (up with the peer's liveness, or down until the back-off's reopen instant), held
//!   by the worker's sessions and Titanic's three MDP workers alike.
//! - [`bstar`]: the Binary Star (primary/backup failover) state machine, pure; driven around
//!   any role's machine by `roles::bstar_server::Bstar`.
//! - [`handler`]: echo or `sh -c CMD` request handling.
//! - [`event`]: events and reports (serde), rendered by the binary. The reports of the modules
//!   above are among them, as plain data those modules fill, so that `event` imports nothing
//!   above it: a chaos run's report and the checker's verdict (`event::chaos`,
//!   `event::verdict`), `pirate bench`'s record (`event::bench`), and what a Titanic store's
//!   check found (`event::store`).
//! - [`json_lines`]: a `--json` line (`ts`, `role`, then the event) and its JSON Schema,
//!   derived from the event types.
//! - [`stats`]: latency percentiles (the `Latency` every report carries).
//! - [`feed`]: reading the next request (stdin may block) as a reactor job.
//! - [`pool`]: the reactor's work threads, reused once idle (a job never waits for one).
//! - [`majordomo`]: the Majordomo client (`MdpClient`) and worker (`serve`) API for Rust
//!   programs, running the same machines as the command line.
//! - [`bench`](mod@bench): `pirate bench`, the load generator: N clients on reactors of their
//!   own, one merged latency histogram; the closed and open (`--rate`) models' timetable and
//!   warm-up (`bench::schedule`), the per-second series, the `--fail-if` thresholds.
//! - [`roles`]: `server`, `client`, … one module per role. Titanic's crash-safe request/reply
//!   store (append-only, checksummed, fsync'd) is its own, `roles::titanic::store`, where
//!   `scan` reads a log back, telling a torn tail from damage to set aside.
//! - `testkit` (unit tests only): `Rig`, which drives any machine as the reactor would on a
//!   clock the test sets, and `msg!`.
//! - [`words`]: counted nouns ("1 fault", "2 faults") for the lines people read.
//! - [`chaos`]: `pirate chaos`: a run's history (`chaos::history`) and the pure checker that
//!   judges it, the live view's text, `report.html` (`chaos::html`), the network plan and the
//!   message-fault proxy (a machine, `chaos::proxy`). The orchestrator that spawns the
//!   topology is the binary's (`src/bin/pirate/chaos/run/`): no library file runs `pirate`.
//!
//! The wire formats the comments quote, and the Guide's "traps" they cite by number, are in
//! `docs/protocols.md`.
//!
//! Imports go one way (no module imports one that imports it back), down through these layers,
//! from the bottom: the plain pieces (`error`, `msg`, `endpoint`, `stats`, `heartbeat`,
//! `backoff`, `connections`, `handshake`, `pool`, `words`); the codecs (`proto`) and the
//! Binary Star machine (`bstar`); `event`, which holds every report; `transport`, `faults` and
//! `json_lines`; the `reactor` and `handler`; `auth`, `feed` and `chaos`; the roles; `bench`
//! and `majordomo`, which run the roles' machines; and the binary on top.

pub mod auth;
pub mod backoff;
pub mod bench;
pub mod bstar;
pub mod chaos;
pub mod connections;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod faults;
pub mod feed;
pub mod handler;
pub mod handshake;
pub mod heartbeat;
pub mod json_lines;
pub mod link;
pub mod majordomo;
pub mod msg;
pub mod pool;
pub mod proto;
pub mod reactor;
pub mod roles;
pub mod stats;
#[cfg(test)]
pub(crate) mod testkit;
pub mod transport;
pub mod words;

pub use error::{Error, Result};
pub use event::Events;
pub use msg::Message;
