//! The command line: clap definitions and their conversion into the library's plain configs.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use pirate::bstar::Role;
use pirate::chaos::report::{NemesisFault, Pattern};
use pirate::faults::{random_seed, FaultPlan};
use pirate::handler::Handler;
use pirate::heartbeat::HeartbeatConfig;
use pirate::proto::mdp::Version;
use pirate::roles::broker::BrokerConfig;
use pirate::roles::bstar_server::{BstarOptions, BstarServerConfig};
use pirate::roles::client::{ClientConfig, Framing};
use pirate::roles::freelance::{FreelanceClientConfig, FreelanceServerConfig};
use pirate::roles::queue::{QueueConfig, QueuePolicy};
use pirate::roles::server::ServerConfig;
use pirate::roles::titanic::{Limits, TitanicClientConfig, TitanicConfig};
use pirate::roles::worker::{PirateProtocol, WorkerConfig};

use crate::auth_args::{ClientAuthArgs, SecurityArg, ServerAuthArgs};
use crate::chaos_run::{ChaosConfig, ChaosSecurity, ProxyPlacement};
use crate::values::{
    parse_bind_endpoint, parse_connect_endpoint, parse_duration, parse_message_size,
    parse_positive_duration, parse_probability, parse_size,
};

/// The exit codes, as a literal so the chaos help can append to it.
macro_rules! exit_codes {
    () => {
        "\
EXIT STATUS:
  0    success
  1    the run finished but something was lost, wrong or abandoned (a chaos verdict
       INVALID or INDETERMINATE)
  2    usage error, before anything starts (bad flag or value: a zero timeout or heartbeat,
       an endpoint with a wrong transport, a bad host or a port outside 1..65535), or an
       endpoint cannot be bound
  69   a peer stayed unreachable after every retry
  70   internal error
  130  interrupted by Ctrl-C or SIGTERM"
    };
}

const EXIT_CODES: &str = exit_codes!();

/// `pirate chaos` and `chaos run`: the verdicts, then the exit codes.
const CHAOS_AFTER_HELP: &str = concat!(
    "\
VERDICT:
  VALID          nothing lost, duplicated, reordered or wrongly answered, and the run showed
                 it (exit 0)
  INVALID        a request lost, duplicated, out of order or wrongly answered, or re-executed
                 with --strict (exit 1)
  INDETERMINATE  nothing fatal, but nothing shown: no request answered, requests abandoned,
                 a --nemesis kind that never struck or was never followed by a reply (exit 1)
  The fault phase goes on past --duration, for at most --max-extension (30s), until every
  --nemesis kind has struck and been recovered from. Ctrl-C prints the verdict of what was
  seen, marked (interrupted), and exits 130.

",
    exit_codes!()
);

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

/// Output conventions shared by every subcommand.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Trace every frame in and out on stderr, in the Guide's dump style
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print nothing but data and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Write JSON Lines on stdout: one object per event or reply, then a summary object
    #[arg(long, global = true)]
    pub json: bool,
}

/// Bounds shared by every role (process-wide: every socket of the process).
#[derive(Args, Debug, Clone, Copy)]
pub struct LimitArgs {
    /// Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is
    /// disconnected before it is buffered. Also bounds an --exec command's output. Sizes take
    /// KiB/MiB/GiB (1024) or k/M/G (1000)
    #[arg(long, global = true, default_value = "16MiB", value_name = "SIZE", value_parser = parse_message_size)]
    pub max_message: u64,
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
    /// Write the man pages or shell completions generated from these definitions
    Generate(GenerateArgs),
}

impl Command {
    /// The security this command's flags ask for, files read and keys checked.
    pub fn security(&self) -> pirate::error::Result<pirate::auth::Security> {
        let bstar = |b: &BstarArgs| b.primary || b.backup;
        let (server, client, connects) = match self {
            Command::Server(a) => (Some(&a.auth), Some(&a.credentials), bstar(&a.bstar)),
            Command::Broker(a) => (Some(&a.auth), Some(&a.credentials), bstar(&a.bstar)),
            Command::Queue(a) => (Some(&a.auth), None, false),
            Command::Client(a) => (None, Some(&a.credentials), true),
            Command::Worker(a) => (None, Some(&a.credentials), true),
            Command::Titanic(a) => (None, Some(&a.credentials), true),
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Proxy(p)),
                ..
            }) => (Some(&p.auth), Some(&p.credentials), true),
            _ => (None, None, false),
        };
        if client.is_some_and(ClientAuthArgs::given) && !connects {
            return Err(pirate::error::Error::Usage(
                "--plain and --curve-server are for Binary Star nodes (--primary or --backup): \
                 this role connects nowhere"
                    .into(),
            ));
        }
        Ok(pirate::auth::Security {
            server: server.map(ServerAuthArgs::policy).transpose()?.flatten(),
            client: client.map(ClientAuthArgs::policy).transpose()?.flatten(),
        })
    }
}

/// A fault preset that reproduces one of the Guide's test programs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// No faults unless other flags ask for them
    None,
    /// The Guide's own test program for this role: lpserver (after 3 cycles crash 1/3, stall
    /// 2s 1/3, 1s work) or spworker/ppworker (after 3 cycles crash 1/5, stall 3s 1/5, 1s work)
    Guide,
}

/// Fault injection flags, the same on every role that does work.
#[derive(Args, Debug, Clone)]
pub struct FaultArgs {
    /// Start from a preset; the other fault flags override its values
    #[arg(long, value_enum, value_name = "PRESET")]
    pub faults: Option<Preset>,
    /// Probability of crashing (SIGKILL to itself) per request, e.g. 0.2 or 20%
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub crash_rate: Option<f64>,
    /// Probability of stalling ("CPU overload") per request
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub overload_rate: Option<f64>,
    /// How long an overload stalls [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub overload_for: Option<Duration>,
    /// Requests served normally before random faults start [default: 3]
    #[arg(long, value_name = "N")]
    pub faults_after: Option<u64>,
    /// Crash deterministically on request N+1
    #[arg(long, value_name = "N")]
    pub crash_after: Option<u64>,
    /// Simulated work per request [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub work: Option<Duration>,
    /// Seed of the fault generator (printed at start); replays a run
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

impl FaultArgs {
    /// The fault flags given, as arguments for a child `pirate` process (`--work` apart).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(flag.to_string());
                args.push(v);
            }
        };
        push(
            "--faults",
            self.faults.map(|p| format!("{p:?}").to_lowercase()),
        );
        push("--crash-rate", self.crash_rate.map(|p| p.to_string()));
        push("--overload-rate", self.overload_rate.map(|p| p.to_string()));
        push("--overload-for", self.overload_for.map(millis));
        push("--faults-after", self.faults_after.map(|n| n.to_string()));
        push("--crash-after", self.crash_after.map(|n| n.to_string()));
        args
    }

    /// The plan: the preset (or nothing), then each flag given on top.
    pub fn plan(&self, guide: FaultPlan) -> FaultPlan {
        let mut plan = match self.faults {
            Some(Preset::Guide) => guide,
            _ => FaultPlan::default(),
        };
        if let Some(p) = self.crash_rate {
            plan.crash_rate = p;
        }
        if let Some(p) = self.overload_rate {
            plan.overload_rate = p;
        }
        if let Some(d) = self.overload_for {
            plan.overload_for = d;
        }
        if let Some(n) = self.faults_after {
            plan.faults_after = n;
        }
        if self.crash_after.is_some() {
            plan.crash_after = self.crash_after;
        }
        if let Some(d) = self.work {
            plan.work = d;
        }
        plan
    }

    /// The seed given, or a fresh one.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(random_seed)
    }
}

/// How requests are handled.
#[derive(Args, Debug, Clone)]
pub struct HandlerArgs {
    /// Run `sh -c CMD` per request, body on stdin (frames one per line, bytes unchanged), and
    /// reply with its stdout
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Kill a command still running after this long, with its whole process group; the
    /// request gets an `error:` reply [default: never]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, requires = "exec")]
    pub exec_timeout: Option<Duration>,
}

impl HandlerArgs {
    pub fn handler(&self) -> Handler {
        match &self.exec {
            Some(cmd) => Handler::Exec(pirate::handler::Exec {
                cmd: cmd.clone(),
                timeout: self.exec_timeout,
            }),
            None => Handler::Echo,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Endpoint to bind the REP socket to (a ROUTER with --primary/--backup)
    #[arg(long, default_value = "tcp://*:5555", value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
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

/// Binary Star flags, the same on `pirate server` and `pirate broker`.
#[derive(Args, Debug, Clone)]
pub struct BstarArgs {
    /// Run as the primary of a Binary Star pair (serves first; the backup takes over when it
    /// dies and a client asks it)
    #[arg(long, conflicts_with = "backup", help_heading = "Binary Star")]
    pub primary: bool,
    /// Run as the backup of a Binary Star pair (serves only once the primary, seen active,
    /// has gone silent and a client asks)
    #[arg(long, help_heading = "Binary Star")]
    pub backup: bool,
    /// Endpoint to bind the PUB socket this node's state is published on [default:
    /// tcp://*:5003 for the primary, tcp://*:5004 for the backup]
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_bind_endpoint, help_heading = "Binary Star")]
    pub state_bind: Option<String>,
    /// The peer's state endpoint to subscribe to [default: tcp://localhost:5004 for the
    /// primary, tcp://localhost:5003 for the backup]
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_connect_endpoint, help_heading = "Binary Star")]
    pub peer_state: Option<String>,
    /// How often each node publishes its state; the peer is dead after two
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_positive_duration, help_heading = "Binary Star")]
    pub state_heartbeat: Duration,
}

impl BstarArgs {
    /// The pair options, or `None` when this node is not half of a pair.
    pub fn options(&self) -> Result<Option<BstarOptions>, String> {
        let role = match (self.primary, self.backup) {
            (true, _) => Role::Primary,
            (_, true) => Role::Backup,
            _ if self.state_bind.is_some() || self.peer_state.is_some() => {
                return Err("--state-bind and --peer-state need --primary or --backup".into())
            }
            _ => return Ok(None),
        };
        let guide = BstarOptions::guide(role);
        Ok(Some(BstarOptions {
            role,
            state_pub: self.state_bind.clone().unwrap_or(guide.state_pub),
            peer_state: self.peer_state.clone().unwrap_or(guide.peer_state),
            heartbeat: self.state_heartbeat,
        }))
    }
}

impl ServerArgs {
    /// The Binary Star server config, when --primary or --backup is given.
    pub fn bstar_config(&self) -> Result<Option<BstarServerConfig>, String> {
        Ok(self.bstar.options()?.map(|o| BstarServerConfig {
            bind: self.bind.clone(),
            state_pub: o.state_pub,
            peer_state: o.peer_state,
            role: o.role,
            heartbeat: o.heartbeat,
            handler: self.handler.handler(),
            faults: self.faults.plan(FaultPlan::guide_server()),
            seed: self.faults.seed(),
        }))
    }

    /// The Freelance server config, with --freelance.
    pub fn freelance_config(&self) -> Option<FreelanceServerConfig> {
        self.freelance.then(|| FreelanceServerConfig {
            bind: self.bind.clone(),
            endpoint: self.endpoint.clone().unwrap_or_default(),
            handler: self.handler.handler(),
            faults: self.faults.plan(FaultPlan::guide_server()),
            seed: self.faults.seed(),
        })
    }

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
    /// Requests to send; without any, one request per line of stdin
    #[arg(value_name = "REQUEST", conflicts_with = "count")]
    pub requests: Vec<String>,
    /// Endpoint to connect to; repeat it to fail over between servers (Binary Star: after a
    /// failed attempt the client moves to the next one) or, with --freelance, to spread
    /// requests over them (each spelled exactly as that server's public endpoint)
    #[arg(long, default_value = "tcp://localhost:5555", value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: Vec<String>,
    /// With several --connect: wait this long after switching, for the backup to take over
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub settle: Duration,
    /// How long each attempt waits for its reply [default: 2500ms; 3s with --freelance]
    #[arg(long, default_value = "2500ms", default_value_if("freelance", "true", "3s"), hide_default_value = true, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Attempts per request, the first included, before abandoning (the Guide's REQUEST_RETRIES)
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
    /// Send the Guide's test sequence 1..N and check that every reply equals its request
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
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
    /// Requests in flight at once, each on its own socket (1 = synchronous, as in the Guide)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub window: u32,
    /// Freelance (10/FLP): spread requests over every --connect server, pinging them, and
    /// retry on another live one after --timeout
    #[arg(long, conflicts_with_all = ["service", "titanic", "protocol", "window", "settle"], help_heading = "Freelance")]
    pub freelance: bool,
    /// With --freelance: how often each server is pinged
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_positive_duration, requires = "freelance", help_heading = "Freelance")]
    pub ping: Duration,
    /// With --freelance: a server silent this long is dead (until it answers again)
    #[arg(long, default_value = "6s", value_name = "DURATION", value_parser = parse_positive_duration, requires = "freelance", help_heading = "Freelance")]
    pub server_ttl: Duration,
    #[command(flatten)]
    pub credentials: ClientAuthArgs,
}

/// The protocol a client speaks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProtocol {
    /// Bare requests to a Lazy Pirate server or a Pirate queue
    Lazy,
    /// 7/MDP, Majordomo 0.1 (MDPC01)
    Mdp,
    /// 18/MDP, Majordomo 0.2 (MDPC02, streamed PARTIAL/FINAL replies)
    Mdp2,
}

impl ClientArgs {
    /// The Titanic client config, with --titanic.
    pub fn titanic_config(&self) -> Option<TitanicClientConfig> {
        let service = self.service.clone().filter(|_| self.titanic)?;
        Some(TitanicClientConfig {
            broker: self.connect[0].clone(),
            service,
            timeout: self.timeout,
            retries: self.retries,
            poll_interval: self.poll_interval,
            check_echo: self.count.is_some() || self.expect_echo,
        })
    }

    /// The Freelance client config, with --freelance.
    pub fn freelance_config(&self) -> Option<FreelanceClientConfig> {
        self.freelance.then(|| FreelanceClientConfig {
            endpoints: self.connect.clone(),
            timeout: self.timeout,
            ping_interval: self.ping,
            server_ttl: self.server_ttl,
            retries: self.retries,
            check_echo: self.count.is_some() || self.expect_echo,
        })
    }

    pub fn config(&self) -> Result<ClientConfig, String> {
        let protocol = self.protocol.unwrap_or(if self.service.is_some() {
            ClientProtocol::Mdp
        } else {
            ClientProtocol::Lazy
        });
        let framing = match (protocol, &self.service) {
            (ClientProtocol::Lazy, None) => Framing::Bare,
            (ClientProtocol::Lazy, Some(_)) => {
                return Err("--service needs a Majordomo protocol (--protocol mdp or mdp2)".into())
            }
            (_, None) => return Err("--protocol mdp and mdp2 need --service NAME".into()),
            (ClientProtocol::Mdp, Some(service)) => Framing::Majordomo {
                version: Version::V1,
                service: service.clone(),
            },
            (ClientProtocol::Mdp2, Some(service)) => Framing::Majordomo {
                version: Version::V2,
                service: service.clone(),
            },
        };
        let mut endpoints = Vec::new();
        for endpoint in &self.connect {
            // An endpoint listed twice is one server, not two chances.
            if !endpoints.contains(endpoint) {
                endpoints.push(endpoint.clone());
            }
        }
        let endpoint = endpoints.remove(0);
        Ok(ClientConfig {
            endpoint,
            failover: endpoints,
            settle: self.settle,
            timeout: self.timeout,
            retries: self.retries,
            check_echo: self.count.is_some() || self.expect_echo,
            framing,
            window: self.window as usize,
        })
    }
}

#[derive(Args, Debug)]
pub struct QueueArgs {
    /// Endpoint clients connect to (ROUTER)
    #[arg(long, default_value = "tcp://*:5555", value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub frontend: String,
    /// Endpoint workers connect to (ROUTER)
    #[arg(long, default_value = "tcp://*:5556", value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub backend: String,
    /// Heartbeat interval (6/PPP)
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,
    /// Silent heartbeat intervals after which a worker is expired
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub liveness: u32,
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
                    heartbeat: HeartbeatConfig {
                        interval: self.heartbeat,
                        liveness: self.liveness,
                    },
                    busy_timeout: self.busy_timeout,
                }
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Endpoint to bind the broker's ROUTER socket to (clients and workers both connect here)
    #[arg(long, default_value = "tcp://*:5555", value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub bind: String,
    /// Heartbeat interval (7/MDP)
    #[arg(long, default_value = "2500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,
    /// Silent heartbeat intervals after which a worker, idle or busy, is expired
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub liveness: u32,
    /// How long a request may wait for a worker of its service before it is dropped
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub request_ttl: Duration,
    /// Requests queued per service at most; a request beyond it is refused (the client retries)
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_queue: usize,
    /// Disconnect a worker that holds one request this long without a reply (its request or
    /// reply was lost on the way, or it hangs while heartbeating); off unless given. Set it
    /// above your slowest request
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub busy_timeout: Option<Duration>,
    /// Bytes of requests queued per service at most (a request beyond it is refused); also
    /// the most one reply assembled from 0.2 PARTIALs for a 0.1 client may hold
    #[arg(long, default_value = "64MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_queue_bytes: u64,
    /// Bytes the broker holds in all, queued requests and held PARTIALs of every service
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_size)]
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
            heartbeat: HeartbeatConfig {
                interval: self.heartbeat,
                liveness: self.liveness,
            },
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

/// Freeze injection, for roles that heartbeat: stop reading and heartbeating for a while.
#[derive(Args, Debug, Clone)]
pub struct FreezeArgs {
    /// Probability per request of freezing: no reads, no heartbeats, as a hung process
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub freeze_rate: Option<f64>,
    /// How long a freeze lasts [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub freeze_for: Option<Duration>,
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
    /// Majordomo service to register for (mdp, mdp2)
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Heartbeat interval [default: 1s, or 2500ms for mdp/mdp2]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub heartbeat: Option<Duration>,
    /// Silent heartbeat intervals after which the queue or broker is taken for dead
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub liveness: u32,
    /// First reconnect delay after losing the queue or broker; doubles each time [default: 1s,
    /// or 2500ms for mdp/mdp2]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect: Option<Duration>,
    /// Longest reconnect delay
    #[arg(long, default_value = "32s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect_max: Duration,
    /// Readable identity prefix; each new socket is NAME-1-<32 random hex digits>,
    /// NAME-2-<…>, …, so logs name the worker and nobody can guess its identity [default:
    /// w<pid>]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
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
    pub fn config(&self) -> Result<WorkerConfig, String> {
        let mut faults = self.faults.plan(FaultPlan::guide_worker());
        if let Some(p) = self.freeze.freeze_rate {
            faults.freeze_rate = p;
        }
        if let Some(d) = self.freeze.freeze_for {
            faults.freeze_for = d;
        }
        let defaults = WorkerConfig::default();
        let protocol = match self.protocol {
            WorkerProtocol::Paranoid => PirateProtocol::Paranoid,
            WorkerProtocol::Simple => PirateProtocol::Simple,
            WorkerProtocol::Mdp => PirateProtocol::Majordomo(Version::V1),
            WorkerProtocol::Mdp2 => PirateProtocol::Majordomo(Version::V2),
        };
        let majordomo = matches!(protocol, PirateProtocol::Majordomo(_));
        let service = match (&self.service, majordomo) {
            (Some(s), true) if s.is_empty() => return Err("--service cannot be empty".into()),
            (Some(s), true) => s.clone(),
            (None, true) => return Err("--protocol mdp and mdp2 need --service NAME".into()),
            (Some(_), false) => {
                return Err("--service is for Majordomo workers (--protocol mdp or mdp2)".into())
            }
            (None, false) => String::new(),
        };
        let (endpoint, interval, reconnect) = if majordomo {
            (
                "tcp://localhost:5555",
                Duration::from_millis(2500),
                Duration::from_millis(2500),
            )
        } else {
            (
                "tcp://localhost:5556",
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
        };
        if self.connect.len() > 1 && !majordomo {
            return Err("several --connect endpoints need --protocol mdp or mdp2".into());
        }
        let mut connect = self.connect.clone();
        if connect.is_empty() {
            connect.push(endpoint.to_string());
        }
        let endpoint = connect.remove(0);
        Ok(WorkerConfig {
            endpoint,
            failover: connect,
            protocol,
            service,
            heartbeat: HeartbeatConfig {
                interval: self.heartbeat.unwrap_or(interval),
                liveness: self.liveness,
            },
            reconnect: self.reconnect.unwrap_or(reconnect),
            reconnect_max: self.reconnect_max,
            name: self.name.clone().unwrap_or(defaults.name),
            handler: self.handler.handler(),
            faults,
            seed: self.faults.seed(),
        })
    }
}

#[derive(Args, Debug)]
pub struct TitanicArgs {
    /// Endpoint of the Majordomo broker
    #[arg(long, default_value = "tcp://localhost:5555", value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: String,
    /// Directory of the durable store (created if missing; one titanic per directory)
    #[arg(long, default_value = ".titanic", value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// Heartbeat interval of the titanic.* workers (7/MDP)
    #[arg(long, default_value = "2500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,
    /// Silent heartbeat intervals after which the broker is taken for dead
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub liveness: u32,
    /// First reconnect delay after losing the broker; doubles up to 32s
    #[arg(long, default_value = "2500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reconnect: Duration,
    /// How long a pending request waits before it is sent to its service again
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub retry_interval: Duration,
    /// How long one attempt to a service waits for its reply
    #[arg(long, default_value = "2500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Largest request accepted (service name and frames); a bigger one is answered
    /// "500 request too big"
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_request_bytes: u64,
    /// New requests are answered "500 store full" while the live data in the store (requests
    /// and replies not yet closed) is past this
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_store_bytes: u64,
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
            heartbeat: HeartbeatConfig {
                interval: self.heartbeat,
                liveness: self.liveness,
            },
            reconnect: self.reconnect,
            retry_interval: self.retry_interval,
            request_timeout: self.request_timeout,
            faults: self.faults.plan(FaultPlan::default()),
            seed: self.faults.seed(),
            limits: Limits {
                max_request_bytes: self.max_request_bytes,
                max_store_bytes: self.max_store_bytes,
            },
            ..TitanicConfig::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(value_enum)]
    pub what: Generated,
    /// Directory to write into [default: man/ or completions/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Generated {
    /// Man pages: pirate.1 and pirate-<subcommand>.1
    Man,
    /// Shell completions for bash, zsh and fish
    Completions,
    /// A new CURVE key pair in Z85, printed (`public: …`, `secret: …`; JSON with --json), for
    /// --auth-curve and --curve-keys
    Keys,
}

/// A duration as a `pirate` flag value.
pub fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: Option<ChaosCommand>,
    /// Seed of the demonstration (printed at start; replays its schedule and faults)
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Write results.json, history.jsonl and each process's log into DIR
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ChaosCommand {
    /// Run a configurable topology under a seeded nemesis, then check the history
    #[command(after_help = CHAOS_AFTER_HELP)]
    Run(Box<ChaosRunArgs>),
    /// Message-level fault proxy between peers and a broker or queue
    #[command(after_help = EXIT_CODES)]
    Proxy(Box<crate::proxy_args::ProxyArgs>),
}

/// Which pattern `pirate chaos run` exercises.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternArg {
    /// pirate server, clients straight to it
    Lazy,
    /// pirate queue --simple and REQ workers
    Simple,
    /// pirate queue and 6/PPP workers
    Paranoid,
    /// pirate broker and MDP workers
    Majordomo,
    /// pirate broker, MDP workers and pirate titanic; clients use --titanic
    Titanic,
    /// a primary and a backup pirate server; clients fail over between them
    Bstar,
    /// --workers Freelance servers, no broker; clients spread requests over them all
    Freelance,
}

/// Which side of the topology the fault proxy sits on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyPlacementArg {
    /// Between the clients and the broker, queue or server
    Clients,
    /// Between the workers and the broker or queue
    Workers,
}

/// A fault the nemesis injects.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NemesisArg {
    /// SIGKILL a worker (or the Lazy Pirate server), restart it after --restart-delay
    Kill,
    /// SIGSTOP a worker for --nemesis-freeze, then SIGCONT
    Freeze,
    /// SIGKILL the broker or queue and start it again on the same endpoints
    Restart,
}

#[derive(Args, Debug)]
pub struct ChaosRunArgs {
    /// Pattern to run
    #[arg(long, value_enum, default_value = "majordomo")]
    pub pattern: PatternArg,
    /// Workers, or Freelance servers (ignored for lazy: one server; bstar: a pair)
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Clients
    #[arg(long, default_value_t = 2, value_name = "M", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub clients: u32,
    /// Requests per client, at least (default: send for the whole --duration); with a
    /// nemesis, clients go on past R until every kind has struck and been recovered from
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Length of the fault phase (healing and draining follow)
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Longest the fault phase goes on past --duration until every --nemesis kind has struck
    /// and a reply came after it (clients keep sending past --requests meanwhile); a kind
    /// still missing then makes the verdict indeterminate
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub max_extension: Duration,
    /// Longest wait for clients to finish after healing
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub drain_timeout: Duration,
    /// Nemesis faults to inject (comma-separated)
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,freeze,restart"
    )]
    pub nemesis: Vec<NemesisArg>,
    /// Time between nemesis actions (0s: no nemesis)
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// How long a killed process stays down
    #[arg(long, default_value = "500ms", value_name = "DURATION", value_parser = parse_duration)]
    pub restart_delay: Duration,
    /// How long the nemesis freezes a worker
    #[arg(long, default_value = "1500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub nemesis_freeze: Duration,
    /// Heartbeat interval of every role (liveness 3)
    #[arg(long, default_value = "250ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,
    /// Clients' timeout per attempt
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Clients' attempts per request
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
    /// Give the Paranoid queue or the Majordomo broker this --busy-timeout (frees workers
    /// whose request or reply a --proxy on the workers' side dropped)
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub busy_timeout: Option<Duration>,
    /// Requests in flight per client
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub window: u32,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub freeze: FreezeArgs,
    /// Run each worker as this shell command instead of `pirate worker` ({endpoint} and
    /// {service} are replaced; majordomo only)
    #[arg(long, value_name = "CMD")]
    pub worker_cmd: Option<String>,
    /// Use the broker (majordomo) or queue frontend (simple, paranoid) at this endpoint
    /// instead of starting one
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: Option<String>,
    /// Put a `pirate chaos proxy` between the clients or the workers and the rest
    #[arg(long, value_enum, value_name = "SIDE")]
    pub proxy: Option<ProxyPlacementArg>,
    /// The proxy's fault flags, as one string, e.g. "--drop 10% --direction down"
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub proxy_faults: Option<String>,
    /// Secure every socket of the topology with generated credentials (written into --out, or
    /// a directory under the system's temporary one)
    #[arg(long, value_enum, default_value = "none", value_name = "MECHANISM")]
    pub security: SecurityArg,
    /// Re-executions on workers make the verdict invalid (default: reported only)
    #[arg(long)]
    pub strict: bool,
    /// Write results.json, history.jsonl and each process's log into DIR
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

impl ChaosRunArgs {
    pub fn config(&self, exe: std::path::PathBuf) -> Result<ChaosConfig, String> {
        let pattern = match self.pattern {
            PatternArg::Lazy => Pattern::Lazy,
            PatternArg::Simple => Pattern::Simple,
            PatternArg::Paranoid => Pattern::Paranoid,
            PatternArg::Majordomo => Pattern::Majordomo,
            PatternArg::Titanic => Pattern::Titanic,
            PatternArg::Bstar => Pattern::Bstar,
            PatternArg::Freelance => Pattern::Freelance,
        };
        if self.worker_cmd.is_some() && pattern != Pattern::Majordomo {
            return Err("--worker-cmd needs --pattern majordomo".into());
        }
        if self.connect.is_some() && pattern != Pattern::Majordomo {
            return Err("--connect needs --pattern majordomo (an external broker)".into());
        }
        let proxy = match (self.proxy, &self.proxy_faults) {
            (None, None) => None,
            (None, Some(_)) => return Err("--proxy-faults needs --proxy clients|workers".into()),
            (Some(ProxyPlacementArg::Workers), _) if pattern == Pattern::Lazy => {
                return Err("--proxy workers needs a broker or queue, not lazy".into())
            }
            (Some(placement), faults) => {
                let faults: Vec<String> = faults
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                // Check them now, with the proxy's own parser, rather than in a child later.
                let mut probe = vec![
                    "pirate",
                    "chaos",
                    "proxy",
                    "--frontend",
                    "tcp://127.0.0.1:1",
                    "--backend",
                    "tcp://127.0.0.1:1",
                ];
                probe.extend(faults.iter().map(String::as_str));
                match Cli::try_parse_from(&probe) {
                    Ok(Cli {
                        command:
                            Command::Chaos(ChaosArgs {
                                command: Some(ChaosCommand::Proxy(p)),
                                ..
                            }),
                        ..
                    }) => {
                        p.config().map_err(|e| format!("--proxy-faults: {e}"))?;
                    }
                    Ok(_) => unreachable!("the probe is a proxy command line"),
                    Err(e) => {
                        let first = e.to_string();
                        let first = first
                            .lines()
                            .next()
                            .unwrap_or("invalid")
                            .trim_start_matches("error: ");
                        return Err(format!("--proxy-faults: {first}"));
                    }
                }
                let placement = match placement {
                    ProxyPlacementArg::Clients => ProxyPlacement::Clients,
                    ProxyPlacementArg::Workers => ProxyPlacement::Workers,
                };
                Some((placement, faults))
            }
        };
        let mut worker_faults = self.faults.to_args();
        if let Some(p) = self.freeze.freeze_rate {
            worker_faults.extend(["--freeze-rate".to_string(), p.to_string()]);
        }
        if let Some(d) = self.freeze.freeze_for {
            worker_faults.extend(["--freeze-for".to_string(), millis(d)]);
        }
        let servers = matches!(pattern, Pattern::Lazy | Pattern::Bstar | Pattern::Freelance);
        if servers && self.freeze.freeze_rate.is_some() {
            return Err("--freeze-rate is for workers, not a pattern of servers".into());
        }
        if self.busy_timeout.is_some() {
            if !matches!(
                pattern,
                Pattern::Paranoid | Pattern::Majordomo | Pattern::Titanic
            ) {
                return Err(
                    "--busy-timeout is for the paranoid queue or the majordomo broker".into(),
                );
            }
            if self.connect.is_some() {
                return Err(
                    "--busy-timeout sets pirate's own broker, not one given by --connect: \
                            start yours with its own"
                        .into(),
                );
            }
        }
        if pattern == Pattern::Freelance && self.window > 1 {
            return Err("--window does not fit Freelance: its clients send one at a time".into());
        }
        let worker_args = match self.faults.work {
            Some(d) => vec!["--work".to_string(), millis(d)],
            None => Vec::new(),
        };
        if self.security != SecurityArg::None && self.worker_cmd.is_some() {
            return Err(
                "--security cannot reach --worker-cmd workers: give them credentials \
                        and run without --security"
                    .into(),
            );
        }
        let dir = self.out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("pirate-chaos-{}", std::process::id()))
        });
        let (binder, connector) = crate::auth_args::topology_flags(self.security, &dir)
            .map_err(|e| format!("--security: {e}"))?;
        let mut nemesis: Vec<NemesisFault> = Vec::new();
        for n in &self.nemesis {
            let fault = match n {
                NemesisArg::Kill => NemesisFault::Kill,
                NemesisArg::Freeze => NemesisFault::Freeze,
                NemesisArg::Restart => NemesisFault::Restart,
            };
            if !nemesis.contains(&fault) {
                nemesis.push(fault);
            }
        }
        Ok(ChaosConfig {
            exe,
            pattern,
            workers: self.workers as usize,
            clients: self.clients as usize,
            requests: self.requests,
            fault_phase: self.duration,
            max_extension: self.max_extension,
            drain_timeout: self.drain_timeout,
            worker_faults,
            worker_args,
            worker_cmd: self.worker_cmd.clone(),
            external: self.connect.clone(),
            proxy,
            nemesis,
            nemesis_interval: self.nemesis_interval,
            restart_delay: self.restart_delay,
            freeze_for: self.nemesis_freeze,
            heartbeat: self.heartbeat,
            client_timeout: self.timeout,
            client_retries: self.retries,
            busy_timeout: self.busy_timeout,
            window: self.window as usize,
            seed: self.faults.seed(),
            strict: self.strict,
            out: self.out.clone(),
            security: ChaosSecurity { binder, connector },
        })
    }
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
            crate::chaos_run::DEFAULT_MAX_EXTENSION
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
}
