//! `pirate chaos proxy` flags and their conversion into the library's [`ProxyConfig`]; its
//! traffic flags also make `pirate chaos run --proxy-faults`.

use std::time::Duration;

use clap::{Args, ValueEnum};

use pirate::chaos::proxy::{parse_frame_selector, Blackhole, Directions, ProxyConfig, ProxyFaults};
use pirate::faults::random_seed;

use crate::args::values::{
    default_duration, parse_bind_endpoint, parse_connect_endpoint, parse_duration,
    parse_positive_duration, parse_probability,
};

/// Which way faulted messages travel.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectionArg {
    /// Frontend → backend: requests from clients, or replies and heartbeats from workers
    Up,
    /// Backend → frontend: replies to clients, or requests and heartbeats to workers
    Down,
    /// Both ways
    Both,
}

/// A message-level fault proxy: peers connect to --frontend instead of the real queue, broker
/// or server at --backend; each peer gets its own upstream connection (its identity is kept).
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub auth: crate::args::auth::ServerAuthArgs,
    #[command(flatten)]
    pub credentials: crate::args::auth::ClientAuthArgs,
    /// Endpoint to bind for peers (ROUTER), e.g. tcp://*:6555
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_bind_endpoint)]
    pub frontend: String,
    /// Endpoint of the real queue, broker or server (one DEALER per peer connects here)
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub backend: String,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// What the proxy does to the traffic it forwards: the flags `pirate chaos run
/// --proxy-faults` passes on to the proxy it starts.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Which messages may be faulted: up (frontend→backend), down (backend→frontend), both
    #[arg(long, value_enum, default_value = "both", value_name = "DIRECTION")]
    pub direction: DirectionArg,
    /// Only fault messages with a frame equal to this: 0x hex (0x04 = MDP HEARTBEAT) or text
    #[arg(long, value_name = "BYTES", value_parser = parse_frame)]
    pub command: Option<FrameArg>,
    /// Selected messages forwarded untouched before faults start
    #[arg(long, default_value_t = ProxyFaults::default().after, value_name = "N")]
    pub after: u64,
    /// At most N faults in total
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Probability of dropping a message, e.g. 0.3 or 30%
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub drop: Option<f64>,
    /// Delay delayed messages by this much (plus --jitter)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Add a uniform random extra delay between 0 and this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub jitter: Option<Duration>,
    /// Probability of delaying a message [default: 1 when --delay or --jitter is given]
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub delay_rate: Option<f64>,
    /// Probability of sending a message twice
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub duplicate: Option<f64>,
    /// Hold messages until N are held (or --reorder-wait passed), then release them shuffled
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub reorder: Option<u64>,
    /// Longest a message waits in the reorder window
    #[arg(long, default_value = default_duration(ProxyFaults::default().reorder_wait), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub reorder_wait: Duration,
    /// Probability of flipping bits in one random frame
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub corrupt: Option<f64>,
    /// Probability of cutting the last frame short (or dropping it if empty)
    #[arg(long, value_name = "P", value_parser = parse_probability)]
    pub truncate: Option<f64>,
    /// Every EVERY, drop every selected message for FOR, e.g. 5s/1s
    #[arg(long, value_name = "EVERY/FOR", value_parser = parse_blackhole)]
    pub blackhole: Option<Blackhole>,
    /// Close a peer's upstream connection after this long without traffic
    #[arg(long, default_value = default_duration(ProxyConfig::default().peer_timeout), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub peer_timeout: Duration,
    /// Seed of the fault generator (printed at start); replays a run
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

/// The bytes of a `--command` frame (a newtype: clap would take a bare `Vec<u8>` for a list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameArg(pub Vec<u8>);

fn parse_frame(text: &str) -> Result<FrameArg, String> {
    parse_frame_selector(text).map(FrameArg)
}

fn parse_blackhole(text: &str) -> Result<Blackhole, String> {
    text.parse()
}

/// `--proxy-faults`'s value parsed as the proxy's own flags would be (no binary name, no
/// endpoints: only what [`TrafficArgs`] declares).
#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct TrafficLine {
    #[command(flatten)]
    traffic: TrafficArgs,
}

impl TrafficArgs {
    /// Parses `flags` (split on whitespace), with clap's first error line as the message.
    pub fn parse_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        use clap::Parser;
        TrafficLine::try_parse_from(flags)
            .map(|line| line.traffic)
            .map_err(|e| {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid");
                first.trim_start_matches("error: ").to_string()
            })
    }

    /// True when --delay or --jitter is given.
    pub fn delayed(&self) -> bool {
        self.delay.is_some() || self.jitter.is_some()
    }

    /// The fault plan (checked by `validate`).
    pub fn faults(&self) -> ProxyFaults {
        let delayed = self.delayed();
        ProxyFaults {
            direction: match self.direction {
                DirectionArg::Up => Directions::Up,
                DirectionArg::Down => Directions::Down,
                DirectionArg::Both => Directions::Both,
            },
            command: self.command.as_ref().map(|f| f.0.clone()),
            after: self.after,
            count: self.count,
            drop: self.drop.unwrap_or(0.0),
            duplicate: self.duplicate.unwrap_or(0.0),
            corrupt: self.corrupt.unwrap_or(0.0),
            truncate: self.truncate.unwrap_or(0.0),
            delay: self.delay.unwrap_or(Duration::ZERO),
            jitter: self.jitter.unwrap_or(Duration::ZERO),
            delay_rate: self.delay_rate.unwrap_or(if delayed { 1.0 } else { 0.0 }),
            reorder: self.reorder.unwrap_or(0) as usize,
            reorder_wait: self.reorder_wait,
            blackhole: self.blackhole,
        }
    }
}

impl ProxyArgs {
    /// The library configuration (its flags checked by `validate`).
    pub fn config(&self) -> ProxyConfig {
        ProxyConfig {
            frontend: self.frontend.clone(),
            backend: self.backend.clone(),
            faults: self.traffic.faults(),
            seed: self.traffic.seed.unwrap_or_else(random_seed),
            peer_timeout: self.traffic.peer_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn config(args: &[&str]) -> Result<ProxyConfig, String> {
        let mut all = vec![
            "proxy",
            "--frontend",
            "tcp://*:6555",
            "--backend",
            "tcp://localhost:5555",
        ];
        all.extend_from_slice(args);
        let args = Wrapper::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .args;
        crate::validate::traffic(&args.traffic)?;
        Ok(args.config())
    }

    #[test]
    fn no_fault_flags_make_a_transparent_proxy() {
        let c = config(&["--seed", "7"]).unwrap();
        assert_eq!(c.faults, ProxyFaults::default());
        assert_eq!(c.seed, 7);
        assert_eq!(c.peer_timeout, Duration::from_secs(60));
    }

    #[test]
    fn fault_flags_map_onto_the_plan() {
        let c = config(&[
            "--drop",
            "30%",
            "--direction",
            "down",
            "--command",
            "0x04",
            "--after",
            "3",
            "--count",
            "5",
            "--delay",
            "100ms",
            "--jitter",
            "50ms",
            "--duplicate",
            "0.1",
            "--reorder",
            "4",
            "--corrupt",
            "1%",
            "--truncate",
            "2%",
            "--blackhole",
            "5s/1s",
        ])
        .unwrap();
        let f = c.faults;
        assert_eq!(f.drop, 0.3);
        assert_eq!(f.direction, Directions::Down);
        assert_eq!(f.command, Some(vec![4]));
        assert_eq!((f.after, f.count), (3, Some(5)));
        assert_eq!(f.delay, Duration::from_millis(100));
        assert_eq!(f.jitter, Duration::from_millis(50));
        assert_eq!(
            f.delay_rate, 1.0,
            "--delay alone delays every selected message"
        );
        assert_eq!(
            (f.duplicate, f.reorder, f.corrupt, f.truncate),
            (0.1, 4, 0.01, 0.02)
        );
        assert_eq!(
            f.blackhole,
            Some(Blackhole {
                every: Duration::from_secs(5),
                for_: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(config(&["--drop", "150%"]).is_err());
        assert!(config(&["--blackhole", "1s/2s"]).is_err());
        assert!(config(&["--command", "0x4"]).is_err());
        assert!(config(&["--reorder", "1"]).is_err());
        assert!(config(&["--delay-rate", "50%"]).is_err());
        assert!(config(&["--direction", "sideways"]).is_err());
    }
}
