//! `pirate chaos` and `pirate chaos run` flags and their conversion into [`ChaosConfig`].

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use pirate::event::chaos::{NemesisFault, Pattern};

use crate::args::auth::SecurityArg;
use crate::args::shared::{millis, FaultArgs, FreezeArgs};
use crate::args::values::{
    default_duration, parse_connect_endpoint, parse_duration, parse_positive_duration,
    parse_probability,
};
use crate::chaos::net::NetConfig;
use crate::chaos::report::ReportArgs;
use crate::chaos::run::{ChaosConfig, ChaosSecurity, ProxyPlacement, DEFAULT_MAX_EXTENSION};
use crate::help::{CHAOS_AFTER_HELP, EXIT_CODES};
use pirate::chaos::net::Shaping;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: Option<ChaosCommand>,
    /// Seed of the demonstration (printed at start; replays its schedule and faults)
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Write results.json, history.jsonl, report.html and each process's log into DIR
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
    Proxy(Box<crate::chaos::proxy::ProxyArgs>),
    /// Render report.html again for a past run, from the files its --out DIR holds
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
}

/// A flag's value that is one of the library's enums (`$lib`, with `ALL` and `name()`): the
/// values are `$lib::ALL` spelt by `name()`, so that the list and its spelling live in the
/// library once; only the help text, `$arg::help`, which speaks of flags, is the binary's.
macro_rules! value_enum_of {
    ($arg:ident, $lib:ty) => {
        impl $arg {
            /// Every value, in the library's order (clap lists them so).
            const VARIANTS: [$arg; <$lib>::ALL.len()] = {
                let mut all = [$arg(<$lib>::ALL[0]); <$lib>::ALL.len()];
                let mut i = 0;
                while i < all.len() {
                    all[i] = $arg(<$lib>::ALL[i]);
                    i += 1;
                }
                all
            };
        }

        impl ValueEnum for $arg {
            fn value_variants<'a>() -> &'a [Self] {
                &Self::VARIANTS
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.0.name()).help(self.help()))
            }
        }
    };
}

/// Which pattern `pirate chaos run` exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternArg(pub Pattern);

value_enum_of!(PatternArg, Pattern);

impl PatternArg {
    /// What `--help`, the man page and the completions say of each value.
    fn help(self) -> &'static str {
        match self.0 {
            Pattern::Lazy => "pirate server, clients straight to it",
            Pattern::Simple => "pirate queue --simple and REQ workers",
            Pattern::Paranoid => "pirate queue and 6/PPP workers",
            Pattern::Majordomo => "pirate broker and MDP workers",
            Pattern::Titanic => {
                "pirate broker, MDP workers and pirate titanic; clients use --titanic"
            }
            Pattern::Bstar => {
                "a primary and a backup pirate server; clients fail over between them"
            }
            Pattern::Freelance => {
                "--workers Freelance servers, no broker; clients spread requests over them all"
            }
        }
    }
}

/// Which side of the topology the fault proxy sits on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyPlacementArg {
    /// Between the clients and the broker, queue or server
    Clients,
    /// Between the workers and the broker or queue
    Workers,
}

/// A fault the nemesis injects: the library's [`NemesisFault`] (see `value_enum_of!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NemesisArg(pub NemesisFault);

value_enum_of!(NemesisArg, NemesisFault);

impl NemesisArg {
    /// What `--help`, the man page and the completions say of each value.
    fn help(self) -> &'static str {
        match self.0 {
            NemesisFault::Kill => {
                "SIGKILL a worker (or the Lazy Pirate server), restart it after --restart-delay"
            }
            NemesisFault::Freeze => "SIGSTOP a worker for --nemesis-freeze, then SIGCONT",
            NemesisFault::Restart => {
                "SIGKILL the broker or queue and start it again on the same endpoints"
            }
            NemesisFault::Partition => {
                "--net namespaces: cut one host off from every other, silently, both ways (nft drop)"
            }
            NemesisFault::Split => {
                "--net namespaces: divide the hosts into two groups that only talk among themselves"
            }
            NemesisFault::Oneway => "--net namespaces: drop one direction between two hosts that talk",
            NemesisFault::Reset => {
                "--net namespaces: refuse one host's TCP at once, both ways (RST), a fast failure"
            }
            NemesisFault::Loss => {
                "--net namespaces: drop --loss of every packet between hosts (the kernel draws which)"
            }
            NemesisFault::Slow => {
                "--net namespaces: limit one host's bandwidth to --rate both ways (tc tbf)"
            }
            NemesisFault::Delay => {
                "--net namespaces: add --delay and --jitter on one host's link (tc netem: refused \
                 before the run where the kernel has no netem)"
            }
        }
    }
}

/// Where the processes of `pirate chaos run` live.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetArg {
    /// Every process on 127.0.0.1 of this machine
    Loopback,
    /// Every process a host of its own: a network namespace with one address on a bridge in
    /// a namespace of the run's own (root only; needs ip, nft and tc)
    Namespaces,
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
    #[arg(long, default_value = default_duration(DEFAULT_MAX_EXTENSION), value_name = "DURATION", value_parser = parse_duration)]
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
    /// Where the processes live: loopback, or a host of their own each (network namespaces;
    /// root only), which the network kinds of --nemesis need
    #[arg(long, value_enum, default_value = "loopback", value_name = "NET")]
    pub net: NetArg,
    /// Bind every endpoint of the topology on a port from LOW-HIGH (both included), for a
    /// host whose firewall opens only those; with --net namespaces each host has every port
    /// of its own, so the range is the ports used on every host
    #[arg(long, value_name = "LOW-HIGH", value_parser = pirate::endpoint::PortRange::parse)]
    pub ports: Option<pirate::endpoint::PortRange>,
    /// How long a network fault lasts before it heals (default: twice the liveness window,
    /// 6 × --heartbeat, so heartbeats must notice)
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub partition_for: Option<Duration>,
    /// Share of packets a `loss` fault drops, e.g. 5% (which packets: the kernel's draw, not
    /// the seed's; the schedule still replays with --seed)
    #[arg(long, default_value = format!("{}%", Shaping::default().loss_percent), value_name = "P", value_parser = parse_probability)]
    pub loss: f64,
    /// Bandwidth a `slow` fault leaves a host, as tc spells it: 1mbit, 512kbit, …
    #[arg(long, default_value = Shaping::default().rate, value_name = "RATE", value_parser = pirate::chaos::net::parse_rate)]
    pub rate: String,
    /// Latency a `delay` fault adds to a host's link, each way
    #[arg(long, default_value = default_duration(Duration::from_millis(Shaping::default().delay_ms)), value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Duration,
    /// Jitter of a `delay` fault
    #[arg(long, default_value = default_duration(Duration::from_millis(Shaping::default().jitter_ms)), value_name = "DURATION", value_parser = parse_duration)]
    pub jitter: Duration,
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
    /// Write results.json, history.jsonl, report.html and each process's log into DIR
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Run again the configuration a past run recorded in DIR/results.json (its seed
    /// included); only --out, -v, -q and --json go beside it
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub replay: Option<std::path::PathBuf>,
}

impl ChaosRunArgs {
    pub fn pattern(&self) -> Pattern {
        self.pattern.0
    }

    /// `--proxy-faults`, one flag or value per word.
    pub fn proxy_fault_flags(&self) -> impl Iterator<Item = &str> {
        self.proxy_faults
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
    }

    /// The run's configuration (its flags checked by `validate`), with the credentials
    /// `--security` asks for written now.
    pub fn config(&self, exe: std::path::PathBuf) -> Result<ChaosConfig, String> {
        let proxy = self.proxy.map(|placement| {
            let placement = match placement {
                ProxyPlacementArg::Clients => ProxyPlacement::Clients,
                ProxyPlacementArg::Workers => ProxyPlacement::Workers,
            };
            (
                placement,
                self.proxy_fault_flags().map(String::from).collect(),
            )
        });
        let mut worker_faults = self.faults.to_args();
        if let Some(p) = self.freeze.freeze_rate {
            worker_faults.extend(["--freeze-rate".to_string(), p.to_string()]);
        }
        if let Some(d) = self.freeze.freeze_for {
            worker_faults.extend(["--freeze-for".to_string(), millis(d)]);
        }
        let worker_args = match self.faults.work {
            Some(d) => vec!["--work".to_string(), millis(d)],
            None => Vec::new(),
        };
        let dir = self.out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("pirate-chaos-{}", std::process::id()))
        });
        let mut nemesis: Vec<NemesisFault> = Vec::new();
        for n in &self.nemesis {
            let fault = n.0;
            if !nemesis.contains(&fault) {
                nemesis.push(fault);
            }
        }
        let net = match self.net {
            NetArg::Loopback => None,
            NetArg::Namespaces => Some(NetConfig {
                partition_for: self.partition_for.unwrap_or(self.heartbeat * 6),
                shaping: Shaping {
                    loss_percent: (self.loss * 100.0).round().clamp(1.0, 100.0) as u8,
                    rate: self.rate.clone(),
                    delay_ms: self.delay.as_millis() as u64,
                    jitter_ms: self.jitter.as_millis() as u64,
                },
            }),
        };
        if net.is_some() {
            // Before anything is written or started: root, the tools, netem for `delay`.
            crate::chaos::net::preflight(nemesis.contains(&NemesisFault::Delay))?;
        }
        let (binder, connector) = crate::args::auth::topology_flags(self.security, &dir)
            .map_err(|e| format!("--security: {e}"))?;
        Ok(ChaosConfig {
            exe,
            net,
            ports: self.ports,
            pattern: self.pattern(),
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
            record: Default::default(),
        })
    }
}
