//! The command line: the top-level parser, one `Args` struct per subcommand, and their
//! conversion into the library's plain configs. Shared flag groups are in `args`, `pirate
//! chaos`'s flags in `chaos::args` and `chaos::proxy`, `pirate bench`'s in `bench`, the rules
//! between flags in `validate`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use pirate::faults::FaultPlan;
use pirate::feed::{Records, Split};
use pirate::majordomo::MdpWorkerConfig;
use pirate::proto::mdp::Version;
use pirate::roles::broker::BrokerConfig;
use pirate::roles::bstar_server::BstarServerConfig;
use pirate::roles::client::{ClientConfig, Correlation};
use pirate::roles::freelance::{FreelanceClientConfig, FreelanceServerConfig};
use pirate::roles::queue::{QueueConfig, QueuePolicy};
use pirate::roles::server::ServerConfig;
use pirate::roles::titanic::{Limits, TitanicClientConfig, TitanicConfig};
use pirate::roles::worker::{PirateProtocol, ReadyDialect, WorkerConfig, MAX_CONCURRENCY};

use crate::args::auth::{ClientAuthArgs, ServerAuthArgs};
use crate::args::shared::{
    framing, BrokerHeartbeat, BstarArgs, ClientProtocol, FaultArgs, FreezeArgs, HandlerArgs,
    HeartbeatArgs, LimitArgs, OutputArgs, QueueHeartbeat, TitanicHeartbeat, WorkerHeartbeat,
};
use crate::args::values::{
    default_duration, default_size, parse_bind_endpoint, parse_connect_endpoint, parse_duration,
    parse_positive_duration, parse_size,
};
use crate::chaos::args::{ChaosArgs, ChaosCommand};
use crate::help::{CHAOS_AFTER_HELP, EXIT_CODES};

/// Reliable request-reply over ZeroMQ: the Guide's Pirate patterns, one subcommand per role.
#[derive(Parser, Debug)]
#[command(name = "pirate", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Lazy Pirate server (REP), or one of a Binary Star pair (--primary/--backup) or a
    /// Freelance server (--freelance): echoes (or runs --exec), with fault injection
    #[command(after_help = EXIT_CODES)]
    Server(ServerArgs),
    /// Client for every pattern: Lazy Pirate, Majordomo (--service), Titanic (--titanic),
    /// Binary Star (repeated --connect) or Freelance (--freelance); timeouts and retries
    #[command(after_help = EXIT_CODES)]
    Client(ClientArgs),
    /// Simple or Paranoid Pirate queue: load-balances clients over workers, heartbeating them
    #[command(after_help = EXIT_CODES)]
    Queue(QueueArgs),
    /// Worker for the Pirate queues: echoes (or runs --exec), heartbeats, reconnects, misbehaves
    #[command(after_help = EXIT_CODES)]
    Worker(WorkerArgs),
    /// Majordomo broker (7/MDP 0.1 and 18/MDP 0.2, 8/MMI): routes requests to workers by service
    #[command(after_help = EXIT_CODES)]
    Broker(BrokerArgs),
    /// Titanic (9/TSP): stores requests on disk, forwards them to services through a broker,
    /// keeps replies until the client closes them
    #[command(after_help = EXIT_CODES)]
    Titanic(TitanicArgs),
    /// Run a whole topology, break it on purpose, and check that nothing was lost (with no
    /// subcommand: the built-in 30-second demonstration)
    #[command(after_help = CHAOS_AFTER_HELP)]
    Chaos(ChaosArgs),
    /// Write the man pages or shell completions generated from these definitions, or print a
    /// CURVE key pair
    #[command(after_help = EXIT_CODES)]
    Generate(GenerateArgs),
    /// Load generator: N clients x W requests in flight against a Majordomo broker
    /// (--service) or a Lazy Pirate server; prints req/s and latency percentiles
    #[command(after_help = EXIT_CODES)]
    Bench(crate::bench::BenchArgs),
}

impl Command {
    /// The role its JSON lines name (one of `pirate::json_lines::ROLES`).
    pub fn role(&self) -> &'static str {
        match self {
            Command::Server(_) => "server",
            Command::Client(_) => "client",
            Command::Queue(_) => "queue",
            Command::Worker(_) => "worker",
            Command::Broker(_) => "broker",
            Command::Titanic(_) => "titanic",
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Proxy(_)),
                ..
            }) => "proxy",
            Command::Chaos(_) => "chaos",
            Command::Generate(_) => "generate",
            Command::Bench(_) => "bench",
        }
    }

    /// The security this command's flags ask for, files read and keys checked.
    pub fn security(&self) -> pirate::error::Result<pirate::auth::Security> {
        let (server, client) = match self {
            Command::Server(a) => (Some(&a.auth), Some(&a.credentials)),
            Command::Broker(a) => (Some(&a.auth), Some(&a.credentials)),
            Command::Queue(a) => (Some(&a.auth), None),
            Command::Client(a) => (None, Some(&a.credentials)),
            Command::Worker(a) => (None, Some(&a.credentials)),
            Command::Titanic(a) => (None, Some(&a.credentials)),
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Proxy(p)),
                ..
            }) => (Some(&p.auth), Some(&p.credentials)),
            _ => (None, None),
        };
        Ok(pirate::auth::Security {
            server: server.map(ServerAuthArgs::policy).transpose()?.flatten(),
            client: client.map(ClientAuthArgs::policy).transpose()?.flatten(),
        })
    }
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Endpoint to bind the REP socket to (a ROUTER with --primary/--backup)
    #[arg(long, default_value = ServerConfig::default().bind, value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub bind: String,
    #[command(flatten)]
    pub handler: HandlerArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub bstar: BstarArgs,
    /// Serve Freelance (10/FLP): a ROUTER whose identity is the public endpoint, answering
    /// PING with PONG; clients spread requests over several such servers
    #[arg(long, conflicts_with_all = ["primary", "backup"], help_heading = "Freelance")]
    pub freelance: bool,
    /// With --freelance: the endpoint clients --connect to, exactly as they spell it (it is
    /// the server's identity) [default: --bind, with * read as localhost]
    #[arg(
        long,
        value_name = "ENDPOINT", value_parser = parse_connect_endpoint,
        requires = "freelance",
        help_heading = "Freelance"
    )]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
    /// With --primary/--backup: what this node presents to its peer's state socket.
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

/// What `pirate server` runs, after its flags.
pub enum ServerMode {
    Lazy(ServerConfig),
    Bstar(BstarServerConfig),
    Freelance(FreelanceServerConfig),
}

impl ServerArgs {
    pub fn mode(&self) -> ServerMode {
        if self.freelance {
            return ServerMode::Freelance(FreelanceServerConfig {
                bind: self.bind.clone(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
                handler: self.handler.handler(),
                faults: self.faults.plan(FaultPlan::guide_server()),
                seed: self.faults.seed(),
            });
        }
        match self.bstar.options() {
            Some(o) => ServerMode::Bstar(BstarServerConfig {
                bind: self.bind.clone(),
                state_pub: o.state_pub,
                peer_state: o.peer_state,
                role: o.role,
                heartbeat: o.heartbeat,
                on_split: o.on_split,
                handler: self.handler.handler(),
                faults: self.faults.plan(FaultPlan::guide_server()),
                seed: self.faults.seed(),
            }),
            None => ServerMode::Lazy(self.config()),
        }
    }

    /// The Lazy Pirate server config.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            bind: self.bind.clone(),
            handler: self.handler.handler(),
            faults: self.faults.plan(FaultPlan::guide_server()),
            seed: self.faults.seed(),
        }
    }
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Requests to send; without any, one request per line of stdin (bytes sent unchanged,
    /// whatever their encoding)
    #[arg(value_name = "REQUEST", conflicts_with = "count")]
    pub requests: Vec<String>,
    /// Read stdin as NUL-terminated requests (as `find -print0` writes them), newlines
    /// included, and end each reply on stdout with a NUL instead of a newline (for `xargs -0`)
    #[arg(short = '0', long, conflicts_with_all = ["requests", "count", "whole"], help_heading = "Input")]
    pub null: bool,
    /// Send the whole of stdin, up to its end, as one request (jq's --slurp), and print its
    /// reply as it is, with no newline added
    #[arg(long, conflicts_with_all = ["requests", "count"], help_heading = "Input")]
    pub whole: bool,
    /// Endpoint to connect to; repeat it to fail over between servers (Binary Star: after a
    /// failed attempt the client moves to the next one) or, with --freelance, to spread
    /// requests over them (each spelled exactly as that server's public endpoint)
    #[arg(long, default_value = ClientConfig::default().endpoint, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: Vec<String>,
    /// With several --connect: wait this long after switching, for the backup to take over
    #[arg(long, default_value = default_duration(ClientConfig::default().settle), value_name = "DURATION", value_parser = parse_duration)]
    pub settle: Duration,
    /// How long each attempt waits for its reply [default: 2500ms; 3s with --freelance]
    #[arg(long, default_value = default_duration(ClientConfig::default().timeout), default_value_if("freelance", "true", default_duration(FreelanceClientConfig::default().timeout)), hide_default_value = true, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Attempts per request, the first included, before abandoning (the Guide's REQUEST_RETRIES)
    #[arg(long, default_value_t = ClientConfig::default().retries, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
    /// Send the Guide's test sequence 1..N and check that every reply equals its request
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Wait this long before reading each request after the first: paces a run (a
    /// walk-through slow enough to kill a server by hand, a steady trickle of load)
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub interval: Option<Duration>,
    /// Check that every reply equals its request (an echo service); a reply that does not is
    /// reported and retried, never accepted (implied by --count)
    #[arg(long)]
    pub expect_echo: bool,
    /// Speak Majordomo to a broker and ask for this service (mmi.service, mmi.status: the
    /// broker's own)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Client protocol: bare Lazy Pirate, or Majordomo 0.1 / 0.2 [default: lazy, or mdp with
    /// --service]
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<ClientProtocol>,
    /// Send each request through Titanic (9/TSP) to --service: store it, poll for the reply,
    /// close it
    #[arg(long, requires = "service")]
    pub titanic: bool,
    /// With --titanic: wait between polls of titanic.reply while the reply is pending
    #[arg(long, default_value = "100ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub poll_interval: Duration,
    /// How a reply is tied to its request: id puts a request id in the envelope of each
    /// request on one DEALER; socket sends each request on a fresh REQ socket with nothing but
    /// the body, for a queue and worker that take only a REQ client's envelope (the Guide's
    /// ppqueue and ppworker) [default: id; mdp/mdp2: what the broker's mmi.correlate says]
    #[arg(long, value_enum, value_name = "HOW")]
    pub correlate: Option<CorrelateArg>,
    /// Requests in flight at once (1 = synchronous, as in the Guide): on one shared socket,
    /// told apart by request ids, or one socket each (--correlate socket, or a broker that
    /// does not carry request ids)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub window: u32,
    /// Freelance (10/FLP): spread requests over every --connect server, pinging them, and
    /// retry on another live one after --timeout
    #[arg(long, conflicts_with_all = ["service", "titanic", "protocol", "window", "settle"], help_heading = "Freelance")]
    pub freelance: bool,
    /// With --freelance: how often each server is pinged
    #[arg(long, default_value = default_duration(FreelanceClientConfig::default().ping_interval), value_name = "DURATION", value_parser = parse_positive_duration, requires = "freelance", help_heading = "Freelance")]
    pub ping: Duration,
    /// With --freelance: a server silent this long is dead (until it answers again)
    #[arg(long, default_value = default_duration(FreelanceClientConfig::default().server_ttl), value_name = "DURATION", value_parser = parse_positive_duration, requires = "freelance", help_heading = "Freelance")]
    pub server_ttl: Duration,
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

/// `pirate client --correlate`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrelateArg {
    /// A request id in each request's envelope, echoed back with its reply
    Id,
    /// A fresh REQ socket per request (and per retry): the body alone on the wire
    Socket,
}

/// What `pirate client` runs, after its flags.
pub enum ClientMode {
    /// Lazy Pirate or Majordomo, to one server or failing over between several.
    Direct(ClientConfig),
    Titanic(TitanicClientConfig),
    Freelance(FreelanceClientConfig),
}

/// The requests a client sends, as bytes (`Send`: they are read on a work thread).
pub type Requests = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// What went wrong reading stdin, if anything: set by the reader, which then ends the
/// requests, and read once the run is over (the run's exit status says so).
#[derive(Clone, Default)]
pub struct InputError(std::sync::Arc<std::sync::OnceLock<String>>);

impl InputError {
    pub fn get(&self) -> Option<&String> {
        self.0.get()
    }
}

impl ClientArgs {
    /// The protocol spoken: --protocol, else lazy, or mdp with --service.
    pub fn protocol(&self) -> ClientProtocol {
        ClientProtocol::or_default(self.protocol, &self.service)
    }

    fn check_echo(&self) -> bool {
        self.count.is_some() || self.expect_echo
    }

    pub fn mode(&self) -> ClientMode {
        if let Some(service) = self.service.clone().filter(|_| self.titanic) {
            return ClientMode::Titanic(TitanicClientConfig {
                broker: self.connect[0].clone(),
                service,
                timeout: self.timeout,
                retries: self.retries,
                poll_interval: self.poll_interval,
                check_echo: self.check_echo(),
            });
        }
        if self.freelance {
            return ClientMode::Freelance(FreelanceClientConfig {
                endpoints: self.connect.clone(),
                timeout: self.timeout,
                ping_interval: self.ping,
                server_ttl: self.server_ttl,
                retries: self.retries,
                check_echo: self.check_echo(),
            });
        }
        ClientMode::Direct(self.config())
    }

    /// The Lazy Pirate or Majordomo client config.
    pub fn config(&self) -> ClientConfig {
        let framing = framing(self.protocol(), self.service.clone().unwrap_or_default());
        let mut endpoints = Vec::new();
        for endpoint in &self.connect {
            // An endpoint listed twice is one server, not two chances.
            if !endpoints.contains(endpoint) {
                endpoints.push(endpoint.clone());
            }
        }
        let endpoint = endpoints.remove(0);
        ClientConfig {
            endpoint,
            failover: endpoints,
            settle: self.settle,
            timeout: self.timeout,
            retries: self.retries,
            check_echo: self.check_echo(),
            framing,
            window: self.window as usize,
            correlation: self.correlate.map(|c| match c {
                CorrelateArg::Id => Correlation::RequestId,
                CorrelateArg::Socket => Correlation::Socket,
            }),
        }
    }

    /// How stdin is cut into requests (-0, --whole, else lines).
    pub fn split(&self) -> Split {
        if self.null {
            Split::Nul
        } else if self.whole {
            Split::Whole
        } else {
            Split::Lines
        }
    }

    /// The requests: 1..=--count, the arguments, or stdin cut by [`Self::split`], each at
    /// most `max` bytes. A read error or a request too long ends them, noted in `error`.
    pub fn requests(&self, max: u64, error: &InputError) -> Requests {
        if let Some(n) = self.count {
            Box::new((1..=n).map(|i| i.to_string().into_bytes()))
        } else if !self.requests.is_empty() {
            Box::new(self.requests.clone().into_iter().map(String::into_bytes))
        } else {
            // Lazily, so a pipeline can feed requests as they come. `Stdin` rather than
            // its lock, which may not leave the thread that took it.
            let stdin = std::io::BufReader::new(std::io::stdin());
            let error = error.clone();
            Box::new(
                Records::new(stdin, self.split(), max).map_while(move |r| match r {
                    Ok(request) => Some(request),
                    Err(e) => {
                        let _ = error.0.set(format!("stdin: {e}"));
                        None
                    }
                }),
            )
        }
    }
}

#[derive(Args, Debug)]
pub struct QueueArgs {
    /// Endpoint clients connect to (ROUTER)
    #[arg(long, default_value = QueueConfig::default().frontend, value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub frontend: String,
    /// Endpoint workers connect to (ROUTER)
    #[arg(long, default_value = QueueConfig::default().backend, value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub backend: String,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs<QueueHeartbeat>,
    /// Run the Simple Pirate queue: no heartbeats, no expiry
    #[arg(long)]
    pub simple: bool,
    /// Forget a worker that holds one request this long (its request or reply was lost on the
    /// way, or it hangs while heartbeating); it reconnects when the queue's heartbeats stop.
    /// Off unless given. Set it above your slowest request
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, conflicts_with = "simple")]
    pub busy_timeout: Option<Duration>,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
}

impl QueueArgs {
    pub fn config(&self) -> QueueConfig {
        QueueConfig {
            frontend: self.frontend.clone(),
            backend: self.backend.clone(),
            policy: if self.simple {
                QueuePolicy::Simple
            } else {
                QueuePolicy::Paranoid {
                    heartbeat: self.heartbeat.config(),
                    busy_timeout: self.busy_timeout,
                }
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Endpoint to bind the broker's ROUTER socket to (clients and workers both connect here)
    #[arg(long, default_value = BrokerConfig::default().bind, value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub bind: String,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs<BrokerHeartbeat>,
    /// How long a request may wait for a worker of its service before it is dropped
    #[arg(long, default_value = default_duration(BrokerConfig::default().request_ttl), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub request_ttl: Duration,
    /// Requests queued per service at most; a request beyond it is refused (the client
    /// retries). A backstop: --max-queue-bytes is what bounds memory
    #[arg(long, default_value_t = BrokerConfig::default().max_queue, value_name = "N")]
    pub max_queue: usize,
    /// Disconnect a worker that holds one request this long without a reply (its request or
    /// reply was lost on the way, or it hangs while heartbeating); off unless given. Set it
    /// above your slowest request
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub busy_timeout: Option<Duration>,
    /// Bytes of requests queued per service at most, each counted as its body, its client's
    /// address and 128 bytes (a request beyond it is refused); also the most one reply
    /// assembled from 0.2 PARTIALs for a 0.1 client may hold
    #[arg(long, default_value = default_size(BrokerConfig::default().max_queue_bytes), value_name = "SIZE", value_parser = parse_size)]
    pub max_queue_bytes: u64,
    /// Bytes the broker holds in all, queued requests and held PARTIALs of every service
    #[arg(long, default_value = default_size(BrokerConfig::default().max_bytes), value_name = "SIZE", value_parser = parse_size)]
    pub max_broker_bytes: u64,
    #[command(flatten)]
    pub bstar: BstarArgs,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
    /// With --primary/--backup: what this node presents to its peer's state socket.
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

impl BrokerArgs {
    pub fn config(&self) -> BrokerConfig {
        BrokerConfig {
            bind: self.bind.clone(),
            heartbeat: self.heartbeat.config(),
            request_ttl: self.request_ttl,
            max_queue: self.max_queue,
            busy_timeout: self.busy_timeout,
            max_queue_bytes: self.max_queue_bytes,
            max_bytes: self.max_broker_bytes,
        }
    }
}

/// The protocol a worker speaks to its queue or broker.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerProtocol {
    /// 6/PPP: DEALER, READY, heartbeats, reconnect with back-off
    Paranoid,
    /// Simple Pirate: REQ, READY once, no heartbeats
    Simple,
    /// 7/MDP Majordomo 0.1 worker (MDPW01) for --service
    Mdp,
    /// 18/MDP Majordomo 0.2 worker (MDPW02): --exec streams each output line as a PARTIAL
    Mdp2,
}

/// How a Simple or Paranoid worker spells READY (and, until the queue has said, HEARTBEAT).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerDialect {
    /// 6/PPP's byte 0x01 first; a socket whose READY gets no answer within the liveness
    /// window is followed by one that says the word "READY", and the spelling answered is kept
    Auto,
    /// Always 6/PPP's bytes 0x01 and 0x02
    Rfc,
    /// Always the words "READY" and "HEARTBEAT" of the Guide's C++ ppqueue and spqueue
    GuideCpp,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Endpoint of the queue's backend or the broker [default: tcp://localhost:5556, or
    /// tcp://localhost:5555 for mdp/mdp2]; mdp/mdp2 workers take it repeated, and move to
    /// the next broker each time they lose one (Binary Star)
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: Vec<String>,
    /// Protocol to speak
    #[arg(long, value_enum, default_value = "paranoid")]
    pub protocol: WorkerProtocol,
    /// How READY is spelled (paranoid, simple): the Guide's C++ ppqueue registers a worker
    /// only on the word "READY"; simple workers send the byte unless pinned to guide-cpp
    #[arg(long, value_enum, default_value = "auto")]
    pub dialect: WorkerDialect,
    /// Majordomo service to register for (mdp, mdp2)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs<WorkerHeartbeat>,
    /// First reconnect delay after losing the queue or broker; doubles each time [default: 1s,
    /// or 2500ms for mdp/mdp2]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect: Option<Duration>,
    /// Longest reconnect delay
    #[arg(long, default_value = default_duration(WorkerConfig::default().reconnect_max), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect_max: Duration,
    /// Readable identity prefix; each new socket is NAME-1-<32 random hex digits>,
    /// NAME-2-<…>, …, so logs name the worker and nobody can guess its identity [default:
    /// w<pid>]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Serve up to N requests at once, their --exec commands running in parallel: with
    /// pirate broker on one connection granted credit N (a "credit=N" READY frame the
    /// Guide's brokers ignore); otherwise N sessions, each an ordinary worker to the queue or
    /// broker (its own socket and identity, READY, heartbeats, reconnect)
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONCURRENCY as i64))]
    pub concurrency: u16,
    #[command(flatten)]
    pub handler: HandlerArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub freeze: FreezeArgs,
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

impl WorkerArgs {
    fn pirate_protocol(&self) -> PirateProtocol {
        match self.protocol {
            WorkerProtocol::Paranoid => PirateProtocol::Paranoid,
            WorkerProtocol::Simple => PirateProtocol::Simple,
            WorkerProtocol::Mdp => PirateProtocol::Majordomo(Version::V1),
            WorkerProtocol::Mdp2 => PirateProtocol::Majordomo(Version::V2),
        }
    }

    /// True for `--protocol mdp` and `mdp2`.
    pub fn majordomo(&self) -> bool {
        matches!(self.pirate_protocol(), PirateProtocol::Majordomo(_))
    }

    pub fn config(&self) -> WorkerConfig {
        let mut faults = self.faults.plan(FaultPlan::guide_worker());
        if let Some(p) = self.freeze.freeze_rate {
            faults.freeze_rate = p;
        }
        if let Some(d) = self.freeze.freeze_for {
            faults.freeze_for = d;
        }
        let defaults = WorkerConfig::default();
        let (endpoint, reconnect) = if self.majordomo() {
            let mdp = MdpWorkerConfig::new("tcp://localhost:5555", "", Version::V1);
            (mdp.endpoint, mdp.reconnect)
        } else {
            (defaults.endpoint.clone(), defaults.reconnect)
        };
        let mut connect = self.connect.clone();
        if connect.is_empty() {
            connect.push(endpoint.to_string());
        }
        let endpoint = connect.remove(0);
        WorkerConfig {
            endpoint,
            failover: connect,
            protocol: self.pirate_protocol(),
            service: self.service.clone().unwrap_or_default(),
            heartbeat: self.heartbeat.config(),
            reconnect: self.reconnect.unwrap_or(reconnect),
            reconnect_max: self.reconnect_max,
            name: self.name.clone().unwrap_or(defaults.name),
            handler: self.handler.handler(),
            faults,
            seed: self.faults.seed(),
            concurrency: self.concurrency.into(),
            dialect: match self.dialect {
                WorkerDialect::Auto => ReadyDialect::Auto,
                WorkerDialect::Rfc => ReadyDialect::Rfc,
                WorkerDialect::GuideCpp => ReadyDialect::GuideCpp,
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct TitanicArgs {
    /// Endpoint of the Majordomo broker
    #[arg(long, default_value = TitanicConfig::default().broker, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: String,
    /// Directory of the durable store (created if missing; one titanic per directory)
    #[arg(long, default_value = TitanicConfig::default().dir.into_os_string(), value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// Verify the store in DIR offline and print what a start would keep, cut off and set
    /// aside, changing nothing; exit 0 clean, 1 damaged, 2 unreadable or in use
    #[arg(long, value_name = "DIR", conflicts_with = "dir")]
    pub check: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs<TitanicHeartbeat>,
    /// First reconnect delay after losing the broker; doubles up to 32s
    #[arg(long, default_value = default_duration(TitanicConfig::default().reconnect), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect: Duration,
    /// How long a pending request waits before it is sent to its service again
    #[arg(long, default_value = default_duration(TitanicConfig::default().retry_interval), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub retry_interval: Duration,
    /// How long one attempt to a service waits for its reply
    #[arg(long, default_value = default_duration(TitanicConfig::default().request_timeout), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Largest request accepted (service name and frames); a bigger one is answered
    /// "500 request too big"
    #[arg(long, default_value = default_size(Limits::default().max_request_bytes), value_name = "SIZE", value_parser = parse_size)]
    pub max_request_bytes: u64,
    /// New requests are answered "500 store full" while the live data in the store (requests
    /// and replies not yet closed) is past this
    #[arg(long, default_value = default_size(Limits::default().max_store_bytes), value_name = "SIZE", value_parser = parse_size)]
    pub max_store_bytes: u64,
    /// New requests are answered "500 disk full" while the file system of --dir has less
    /// free space than this, kept for the replies of requests already accepted
    #[arg(long, default_value = default_size(Limits::default().min_free), value_name = "SIZE", value_parser = parse_size)]
    pub min_free: u64,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

impl TitanicArgs {
    pub fn config(&self) -> TitanicConfig {
        TitanicConfig {
            broker: self.connect.clone(),
            dir: self.dir.clone(),
            heartbeat: self.heartbeat.config(),
            reconnect: self.reconnect,
            retry_interval: self.retry_interval,
            request_timeout: self.request_timeout,
            faults: self.faults.plan(FaultPlan::default()),
            seed: self.faults.seed(),
            limits: Limits {
                max_request_bytes: self.max_request_bytes,
                max_store_bytes: self.max_store_bytes,
                min_free: self.min_free,
            },
            ..TitanicConfig::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(value_enum)]
    pub what: Generated,
    /// Directory to write into [default: man/ or completions/]; `-` writes one --shell's
    /// completions to stdout
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Completions for this shell only [default: bash, zsh and fish]
    #[arg(long, value_enum, value_name = "SHELL")]
    pub shell: Option<clap_complete::Shell>,
}

impl GenerateArgs {
    /// `--out -`: stdout, not a directory named `-`.
    pub fn to_stdout(&self) -> bool {
        self.out.as_deref() == Some(std::path::Path::new("-"))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generated {
    /// Man pages: pirate.1 and pirate-<subcommand>.1
    Man,
    /// Shell completions for bash, zsh and fish
    Completions,
    /// A new CURVE key pair in Z85, printed (`public: …`, `secret: …`; JSON with --json), for
    /// --auth-curve and --curve-keys
    Keys,
    /// The JSON Schema (2020-12) of every --json line, printed (docs/events.schema.json)
    Schema,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_documented_extension_cap_is_the_librarys() {
        let cli = Cli::parse_from(["pirate", "chaos", "run"]);
        let Command::Chaos(ChaosArgs {
            command: Some(ChaosCommand::Run(args)),
            ..
        }) = cli.command
        else {
            panic!("parsed as another command")
        };
        let config = args.config("pirate".into()).unwrap();
        assert_eq!(
            config.max_extension,
            crate::chaos::run::DEFAULT_MAX_EXTENSION
        );
    }

    #[test]
    fn the_guide_preset_is_overridden_by_explicit_flags() {
        let cli = Cli::parse_from(["pirate", "server", "--faults", "guide", "--work", "10ms"]);
        let Command::Server(args) = cli.command else {
            panic!("parsed as another command")
        };
        let plan = args.config().faults;
        assert_eq!(plan.work, Duration::from_millis(10));
        assert_eq!(plan.crash_rate, 1.0 / 3.0);
    }

    fn heartbeat(args: &[&str]) -> (Duration, u32) {
        let cli = Cli::parse_from(args);
        let hb = match &cli.command {
            Command::Queue(a) => a.heartbeat.config(),
            Command::Broker(a) => a.heartbeat.config(),
            Command::Worker(a) => a.heartbeat.config(),
            Command::Titanic(a) => a.heartbeat.config(),
            _ => panic!("parsed as another command"),
        };
        (hb.interval, hb.liveness)
    }

    #[test]
    fn each_role_keeps_its_protocols_heartbeat_default() {
        let ms = Duration::from_millis;
        assert_eq!(heartbeat(&["pirate", "queue"]), (ms(1000), 3));
        assert_eq!(heartbeat(&["pirate", "broker"]), (ms(2500), 3));
        assert_eq!(heartbeat(&["pirate", "titanic"]), (ms(2500), 3));
        assert_eq!(heartbeat(&["pirate", "worker"]), (ms(1000), 3));
        let simple = ["pirate", "worker", "--protocol", "simple"];
        assert_eq!(heartbeat(&simple), (ms(1000), 3));
        for protocol in ["mdp", "mdp2"] {
            let mdp = [
                "pirate",
                "worker",
                "--protocol",
                protocol,
                "--service",
                "echo",
            ];
            assert_eq!(heartbeat(&mdp), (ms(2500), 3), "{protocol}");
        }
        let given = [
            "pirate",
            "worker",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--heartbeat",
            "300ms",
            "--liveness",
            "5",
        ];
        assert_eq!(heartbeat(&given), (ms(300), 5));
        assert_eq!(
            heartbeat(&["pirate", "queue", "--heartbeat", "2s", "--liveness", "4"]),
            (ms(2000), 4)
        );
        assert!(Cli::try_parse_from(["pirate", "broker", "--liveness", "0"]).is_err());
    }
}
