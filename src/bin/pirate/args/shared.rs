//! The flag groups several subcommands share, each declared once and flattened
//! (`#[command(flatten)]`) into every subcommand that takes it: output and limits (global),
//! heartbeats, fault injection, freezes, request handling and Binary Star. The security
//! groups live in `args::auth`, next to the files they read.

use std::marker::PhantomData;
use std::time::Duration;

use clap::{Args, ValueEnum};

use pirate::bstar::{BstarConfig, Role, SplitPolicy};
use pirate::connections::Budget;
use pirate::faults::{random_seed, FaultPlan};
use pirate::handler::Handler;
use pirate::heartbeat::HeartbeatConfig;
use pirate::majordomo::MdpWorkerConfig;
use pirate::proto::mdp::Version;
use pirate::roles::broker::BrokerConfig;
use pirate::roles::bstar_server::BstarOptions;
use pirate::roles::client::Framing;
use pirate::roles::queue::{QueueConfig, QueuePolicy};
use pirate::roles::titanic::TitanicConfig;
use pirate::roles::worker::WorkerConfig;

use crate::args::values::{
    default_duration, default_size, parse_bind_endpoint, parse_connect_endpoint, parse_duration,
    parse_message_size, parse_positive_duration, parse_probability,
};

/// The help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

/// Output conventions shared by every subcommand.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Trace every frame in and out on stderr, in the Guide's dump style
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub verbose: bool,
    /// Print nothing but data and errors
    #[arg(short, long, global = true, help_heading = GLOBAL, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Write JSON Lines on stdout: one object per event or reply, then a summary object
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// The subcommand, as each JSON line's `role` (set after parsing, from the command).
    #[arg(skip)]
    pub role: &'static str,
}

/// Bounds shared by every role (process-wide: every socket of the process).
#[derive(Args, Debug, Clone, Copy)]
pub struct LimitArgs {
    /// Largest frame any socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a bigger one is
    /// disconnected before it is buffered. Also bounds an --exec command's output. Sizes take
    /// KiB/MiB/GiB (1024) or k/M/G (1000)
    #[arg(long, global = true, help_heading = GLOBAL, default_value = default_size(pirate::transport::DEFAULT_MAX_MESSAGE), value_name = "SIZE", value_parser = parse_message_size)]
    pub max_message: u64,
    /// Connections each bound TCP socket keeps open at once; one more is closed right after
    /// it is accepted, and counted. 0: no limit [default: (descriptor limit - 256) / 3, at
    /// most 10000]
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "N")]
    pub max_connections: Option<u32>,
    /// Of those, connections from one IP address. 0: no limit [default: a quarter of
    /// --max-connections]
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "N")]
    pub max_connections_per_address: Option<u32>,
    /// Close a connection whose peer has not finished its ZMTP handshake (greeting, security,
    /// READY) after this long (ZMQ_HANDSHAKE_IVL), so half-open connections give their
    /// descriptors back
    #[arg(long, global = true, help_heading = GLOBAL, default_value = default_duration(pirate::connections::DEFAULT_HANDSHAKE_TIMEOUT), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub handshake_timeout: Duration,
}

impl LimitArgs {
    /// The connection budget for a process that may hold `descriptors` open: the flags given,
    /// the defaults for that limit otherwise.
    pub fn budget(&self, descriptors: u64) -> Budget {
        let defaults = Budget::for_descriptors(descriptors);
        let max = self.max_connections.unwrap_or(defaults.max);
        Budget {
            max,
            per_address: self
                .max_connections_per_address
                .unwrap_or_else(|| Budget::default_per_address(max)),
            handshake: self.handshake_timeout,
        }
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
    #[arg(long, default_value = default_duration(BstarConfig::default().heartbeat), value_name = "DURATION", value_parser = parse_positive_duration, help_heading = "Binary Star")]
    pub state_heartbeat: Duration,
    /// What a node does when, after it lost sight of its peer, it finds the peer active too
    /// (or passive too)
    #[arg(
        long,
        value_enum,
        default_value = "resolve",
        value_name = "RULE",
        help_heading = "Binary Star"
    )]
    pub on_split: OnSplit,
}

/// `--on-split`: heal a split pair, or stop it as the Guide does.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSplit {
    /// Heal: the node that served no client while apart steps down to passive; if both
    /// served, the backup does; if both end passive, the primary takes over
    Resolve,
    /// The Guide's rule: both nodes stop with exit 69 (split brain)
    Stop,
}

impl BstarArgs {
    /// True when this node is half of a pair.
    pub fn paired(&self) -> bool {
        self.primary || self.backup
    }

    /// The pair options, or `None` when this node is not half of a pair.
    pub fn options(&self) -> Option<BstarOptions> {
        let role = match (self.primary, self.backup) {
            (true, _) => Role::Primary,
            (_, true) => Role::Backup,
            _ => return None,
        };
        let guide = BstarOptions::guide(role);
        Some(BstarOptions {
            role,
            state_pub: self.state_bind.clone().unwrap_or(guide.state_pub),
            peer_state: self.peer_state.clone().unwrap_or(guide.peer_state),
            heartbeat: self.state_heartbeat,
            on_split: match self.on_split {
                OnSplit::Resolve => SplitPolicy::Resolve,
                OnSplit::Stop => SplitPolicy::Stop,
            },
        })
    }
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

/// A duration as a `pirate` flag value.
pub fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// `--heartbeat` and `--liveness`, declared once for every role that heartbeats. The roles
/// disagree only on the default interval (each protocol's own: 1s for 6/PPP, 2500ms for
/// 7/MDP) and on who is taken for dead, so those come from `R`, a marker type per role; the
/// flags' names, parsers and bounds are the same everywhere.
#[derive(Args, Debug, Clone)]
pub struct HeartbeatArgs<R: HeartbeatRole> {
    #[arg(
        long,
        help = R::INTERVAL_HELP,
        default_value = default_duration(R::interval()),
        default_value_ifs = R::INTERVAL_IFS.iter().map(|&(flag, value, d)| (flag, value, default_duration(d()))),
        hide_default_value = !R::INTERVAL_IFS.is_empty(),
        value_name = "DURATION",
        value_parser = parse_positive_duration
    )]
    pub heartbeat: Duration,
    #[arg(
        long,
        help = R::LIVENESS_HELP,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub liveness: u32,
    #[arg(skip)]
    role: PhantomData<R>,
}

impl<R: HeartbeatRole> HeartbeatArgs<R> {
    pub fn config(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: self.heartbeat,
            liveness: self.liveness,
        }
    }
}

/// A default that depends on another flag: (that flag, its value, this default).
pub type DefaultIf = (&'static str, &'static str, fn() -> Duration);

/// What one role's heartbeat flags say: the default interval and the help lines.
pub trait HeartbeatRole: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// `--heartbeat`'s help.
    const INTERVAL_HELP: &'static str;
    /// `--heartbeat`'s default: the library config's.
    fn interval() -> Duration;
    /// Defaults that depend on another flag, as clap's `default_value_ifs` takes them:
    /// (flag, its value, this default). When there are any, the help states the defaults.
    const INTERVAL_IFS: &'static [DefaultIf] = &[];
    /// `--liveness`'s help: who is taken for dead.
    const LIVENESS_HELP: &'static str;
}

/// `pirate queue`: 6/PPP, heartbeating its workers.
#[derive(Clone, Debug)]
pub struct QueueHeartbeat;
impl HeartbeatRole for QueueHeartbeat {
    const INTERVAL_HELP: &'static str = "Heartbeat interval (6/PPP)";
    fn interval() -> Duration {
        match QueueConfig::default().policy {
            QueuePolicy::Paranoid { heartbeat, .. } => heartbeat.interval,
            QueuePolicy::Simple => unreachable!("the default queue is the Paranoid one"),
        }
    }
    const LIVENESS_HELP: &'static str =
        "Silent heartbeat intervals after which a worker is expired";
}

/// `pirate broker`: 7/MDP, heartbeating its workers.
#[derive(Clone, Debug)]
pub struct BrokerHeartbeat;
impl HeartbeatRole for BrokerHeartbeat {
    const INTERVAL_HELP: &'static str = "Heartbeat interval (7/MDP)";
    fn interval() -> Duration {
        BrokerConfig::default().heartbeat.interval
    }
    const LIVENESS_HELP: &'static str =
        "Silent heartbeat intervals after which a worker, idle or busy, is expired";
}

/// `pirate worker`: 6/PPP or 7/MDP, after its `--protocol`.
#[derive(Clone, Debug)]
pub struct WorkerHeartbeat;
impl HeartbeatRole for WorkerHeartbeat {
    const INTERVAL_HELP: &'static str = "Heartbeat interval [default: 1s, or 2500ms for mdp/mdp2]";
    fn interval() -> Duration {
        WorkerConfig::default().heartbeat.interval
    }
    const INTERVAL_IFS: &'static [DefaultIf] = &[
        ("protocol", "mdp", mdp_worker_interval),
        ("protocol", "mdp2", mdp_worker_interval),
    ];
    const LIVENESS_HELP: &'static str =
        "Silent heartbeat intervals after which the queue or broker is taken for dead";
}

/// A 7/MDP worker's default heartbeat interval, the library's.
fn mdp_worker_interval() -> Duration {
    MdpWorkerConfig::new("", "", Version::V1).heartbeat.interval
}

/// `pirate titanic`: its titanic.* workers speak 7/MDP to the broker.
#[derive(Clone, Debug)]
pub struct TitanicHeartbeat;
impl HeartbeatRole for TitanicHeartbeat {
    const INTERVAL_HELP: &'static str = "Heartbeat interval of the titanic.* workers (7/MDP)";
    fn interval() -> Duration {
        TitanicConfig::default().heartbeat.interval
    }
    const LIVENESS_HELP: &'static str =
        "Silent heartbeat intervals after which the broker is taken for dead";
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

impl ClientProtocol {
    /// `protocol` if given, else lazy, or mdp with a service.
    pub fn or_default(protocol: Option<ClientProtocol>, service: &Option<String>) -> Self {
        protocol.unwrap_or(if service.is_some() {
            ClientProtocol::Mdp
        } else {
            ClientProtocol::Lazy
        })
    }
}

/// What goes around a request for `protocol` (`service` is unused when bare).
pub fn framing(protocol: ClientProtocol, service: String) -> Framing {
    match protocol {
        ClientProtocol::Lazy => Framing::Bare,
        ClientProtocol::Mdp => Framing::Majordomo {
            version: Version::V1,
            service,
        },
        ClientProtocol::Mdp2 => Framing::Majordomo {
            version: Version::V2,
            service,
        },
    }
}
