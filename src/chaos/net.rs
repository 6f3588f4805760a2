//! Real networks for `pirate chaos run --net namespaces`, the pure part: the plan of hosts
//! (one Linux network namespace each, one address on a bridge in a namespace of the run's
//! own), which hosts a network fault cuts (chosen from the seed), and the exact `ip`, `nft`
//! and `tc` command lines that set the network up, strike a fault, heal it and tear it all
//! down. Nothing here runs a command: the binary does (`chaos_net.rs`), printing each under
//! `-v`, so these functions can be tested without privileges.
//!
//! # The network
//!
//! ```text
//!   namespace <run>-hub:   bridge br0 ── v1 ── v2 ── … (one port per host)
//!   namespace <run>-h1:    eth0 10.77.0.1/24   (veth peer of v1)
//!   namespace <run>-h2:    eth0 10.77.0.2/24   …
//! ```
//!
//! The 10.77.0.0/24 addresses exist only inside these namespaces: no host has a route out and
//! the bridge has no port outside the hub, so no packet reaches the machine's own network.
//! Every run uses the same addresses; each run's namespaces are its own, so two runs never
//! meet. Namespace names carry the run's id and interface names are per namespace (`br0`,
//! `vN` in the hub, `eth0` in a host), within the kernel's 15 characters.
//!
//! # The faults
//!
//! Every packet between two hosts crosses the hub's bridge once, so most faults are rules in
//! one nftables chain there (`table bridge pirate`, chain `forward`), matched on bridge ports:
//! a `partition` drops whatever enters or leaves the host's port (silently: no RST, no ICMP,
//! the failure heartbeats exist for), a `split` drops what crosses between the two groups'
//! ports, a `oneway` drops one direction between two ports, a `loss` drops a share of all
//! packets (`numgen random mod 100 < P`: the kernel's draw, not the seed's). This kernel's
//! bridge family cannot `reject`, so `reset` is two rules in the host's own namespace
//! (`table inet pirate`): TCP arriving is answered with a RST, TCP leaving is refused at once
//! (except RSTs themselves, or the answer would be dropped too). `slow` and `delay` are
//! `tc` qdiscs (`tbf`, `netem`) on both ends of the host's link, one per direction. Healing
//! undoes exactly what striking did. One network fault is active at a time.

use std::fmt;
use std::net::Ipv4Addr;

use rand::seq::SliceRandom;
use rand::Rng;

use super::history::Record;
use crate::event::chaos::{shell_word, Detection, NetKind, NetworkFault, NETWORK_FAULTS};

/// The hosts' subnet: 10.77.0.0/24, only ever inside the run's own namespaces.
pub const SUBNET: [u8; 3] = [10, 77, 0];
/// The most hosts one run can have (10.77.0.1 ..= 10.77.0.250).
pub const MAX_HOSTS: usize = 250;
/// The tbf bucket and queue for `slow`: a 32 kbit burst, packets waiting longer than 400 ms
/// are dropped (a bound on what the shaper holds).
const TBF_BURST: &str = "32kbit";
const TBF_LATENCY: &str = "400ms";

/// One host: a process of the topology with a namespace and an address of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The process it runs: `broker`, `worker-2`, `client-1`, …
    pub name: String,
    /// Its network namespace (`ip netns` name).
    pub netns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// Its port on the hub's bridge (`vN`, in the hub namespace).
    pub port: String,
}

/// The run's network: its hub namespace and its hosts, in the topology's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPlan {
    /// The namespace holding the bridge.
    pub hub: String,
    pub hosts: Vec<Host>,
}

/// One command line (`argv[0]` is `ip`, `tc` or `nft`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetCommand(pub Vec<String>);

impl NetCommand {
    fn new(args: &[&str]) -> Self {
        NetCommand(args.iter().map(|s| s.to_string()).collect())
    }
}

impl fmt::Display for NetCommand {
    /// As a shell would need it typed (what `-v` prints, to be copied and rerun).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self.0.iter().map(|w| shell_word(w)).collect();
        f.write_str(&words.join(" "))
    }
}

/// Which hosts a network fault cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// One host (`partition`, `reset`, `slow`, `delay`).
    Host(String),
    /// Two groups that each keep talking among themselves (`split`).
    Groups(Vec<String>, Vec<String>),
    /// Packets from `from` to `to` dropped: `from` still hears `to` (`oneway`).
    OneWay { from: String, to: String },
    /// Every link (`loss`).
    Everyone,
}

impl Cut {
    /// How the schedule and the history write it: `worker-1`, `broker+worker-1 | client-1`,
    /// `worker-1 -> broker`, `all`. [`Cut::parse`] reads it back.
    pub fn target(&self) -> String {
        match self {
            Cut::Host(h) => h.clone(),
            Cut::Groups(a, b) => format!("{} | {}", a.join("+"), b.join("+")),
            Cut::OneWay { from, to } => format!("{from} -> {to}"),
            Cut::Everyone => "all".into(),
        }
    }

    /// The cut a target names, for `kind`; `None` when it is not one.
    pub fn parse(kind: NetKind, target: &str) -> Option<Cut> {
        let names = |s: &str| -> Vec<String> {
            s.split('+')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect()
        };
        match kind {
            NetKind::Partition | NetKind::Reset | NetKind::Slow | NetKind::Delay => {
                (!target.is_empty() && !target.contains(' ')).then(|| Cut::Host(target.into()))
            }
            NetKind::Split => {
                let (a, b) = target.split_once(" | ")?;
                let (a, b) = (names(a), names(b));
                (!a.is_empty() && !b.is_empty()).then_some(Cut::Groups(a, b))
            }
            NetKind::Oneway => {
                let (from, to) = target.split_once(" -> ")?;
                Some(Cut::OneWay {
                    from: from.trim().into(),
                    to: to.trim().into(),
                })
            }
            NetKind::Loss => (target == "all").then_some(Cut::Everyone),
        }
    }

    /// The hosts it cuts off from someone (all of them for `Everyone`, given `all`).
    pub fn hosts(&self, all: &[String]) -> Vec<String> {
        match self {
            Cut::Host(h) => vec![h.clone()],
            Cut::Groups(a, b) => {
                // The smaller side is the one "cut off"; both lose each other.
                let mut both = a.clone();
                both.extend(b.iter().cloned());
                both
            }
            Cut::OneWay { from, to } => vec![from.clone(), to.clone()],
            Cut::Everyone => all.to_vec(),
        }
    }
}

/// What `loss`, `slow` and `delay` do (`--loss`, `--rate`, `--delay`, `--jitter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shaping {
    /// Percent of packets a `loss` drops, 1 ..= 100.
    pub loss_percent: u8,
    /// A `tc` rate, e.g. `1mbit`.
    pub rate: String,
    pub delay_ms: u64,
    pub jitter_ms: u64,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping {
            loss_percent: 5,
            rate: "1mbit".into(),
            delay_ms: 100,
            jitter_ms: 20,
        }
    }
}

/// Checks a `--rate` value the way `tc` spells rates: digits, then `bit`, `kbit`, `mbit`,
/// `gbit` (or the byte units `bps`, `kbps`, `mbps`, `gbps`).
pub fn parse_rate(s: &str) -> Result<String, String> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    let (n, unit) = s.split_at(digits);
    let units = ["bit", "kbit", "mbit", "gbit", "bps", "kbps", "mbps", "gbps"];
    match n.parse::<u64>() {
        Ok(n) if n > 0 && units.contains(&unit) => Ok(s),
        _ => Err(format!(
            "`{s}` is not a rate: a number and one of {}, e.g. 1mbit",
            units.join(", ")
        )),
    }
}

impl NetPlan {
    /// The plan for a run with id `run` (unique on this machine: the runner's pid and clock)
    /// and these processes, each a host, addressed in this order.
    pub fn new(run: &str, names: &[String]) -> Result<NetPlan, String> {
        if names.len() > MAX_HOSTS {
            return Err(format!(
                "--net namespaces: {} processes, at most {MAX_HOSTS} hosts fit 10.77.0.0/24",
                names.len()
            ));
        }
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, name)| Host {
                name: name.clone(),
                netns: format!("pirate-{run}-{name}"),
                addr: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1),
                port: format!("v{}", i + 1),
            })
            .collect();
        Ok(NetPlan {
            hub: format!("pirate-{run}-hub"),
            hosts,
        })
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Every namespace of the run, the hub last (what the watchdog removes).
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.hosts.iter().map(|h| h.netns.clone()).collect();
        all.push(self.hub.clone());
        all
    }

    /// Builds the network: the hub and its bridge (with the empty `forward` chain faults
    /// fill), then each host's namespace, its veth pair (created from the hub, its peer
    /// moved straight into the host: nothing ever appears in the machine's namespace), its
    /// address.
    pub fn setup(&self) -> Vec<NetCommand> {
        let hub = self.hub.as_str();
        let mut out = vec![
            NetCommand::new(&["ip", "netns", "add", hub]),
            NetCommand::new(&["ip", "-n", hub, "link", "set", "lo", "up"]),
            NetCommand::new(&["ip", "-n", hub, "link", "add", "br0", "type", "bridge"]),
            NetCommand::new(&["ip", "-n", hub, "link", "set", "br0", "up"]),
            NetCommand::new(&[
                "ip",
                "netns",
                "exec",
                hub,
                "nft",
                "add table bridge pirate; add chain bridge pirate forward \
                 { type filter hook forward priority 0; policy accept; }",
            ]),
        ];
        for h in &self.hosts {
            let ns = h.netns.as_str();
            let addr = format!("{}/24", h.addr);
            out.extend([
                NetCommand::new(&["ip", "netns", "add", ns]),
                NetCommand::new(&["ip", "-n", ns, "link", "set", "lo", "up"]),
                NetCommand::new(&[
                    "ip", "-n", hub, "link", "add", &h.port, "type", "veth", "peer", "name",
                    "eth0", "netns", ns,
                ]),
                NetCommand::new(&["ip", "-n", hub, "link", "set", &h.port, "master", "br0"]),
                NetCommand::new(&["ip", "-n", hub, "link", "set", &h.port, "up"]),
                NetCommand::new(&["ip", "-n", ns, "addr", "add", &addr, "dev", "eth0"]),
                NetCommand::new(&["ip", "-n", ns, "link", "set", "eth0", "up"]),
            ]);
        }
        out
    }

    /// Removes every namespace (the veth pairs and rules go with them).
    pub fn teardown(&self) -> Vec<NetCommand> {
        self.namespaces()
            .iter()
            .map(|ns| NetCommand::new(&["ip", "netns", "del", ns]))
            .collect()
    }

    /// Runs `argv` as host `name`: `ip netns exec <ns> argv…`.
    pub fn exec(&self, name: &str, argv: &[String]) -> Option<Vec<String>> {
        let host = self.host(name)?;
        let mut out: Vec<String> = ["ip", "netns", "exec", &host.netns]
            .map(String::from)
            .to_vec();
        out.extend(argv.iter().cloned());
        Some(out)
    }

    fn port(&self, name: &str) -> Result<&str, String> {
        self.host(name)
            .map(|h| h.port.as_str())
            .ok_or_else(|| format!("no host named {name}"))
    }

    fn ports(&self, names: &[String]) -> Result<String, String> {
        let ports: Result<Vec<String>, String> = names
            .iter()
            .map(|n| self.port(n).map(|p| format!("\"{p}\"")))
            .collect();
        Ok(format!("{{ {} }}", ports?.join(", ")))
    }

    fn hub_rules(&self, rules: &[String]) -> NetCommand {
        let mut script = String::from("flush chain bridge pirate forward");
        for r in rules {
            script.push_str("; add rule bridge pirate forward ");
            script.push_str(r);
        }
        NetCommand(
            ["ip", "netns", "exec", &self.hub, "nft", &script]
                .map(String::from)
                .to_vec(),
        )
    }

    /// Both ends of a host's link: its own `eth0` (what it sends) and its bridge port in the
    /// hub (what it receives).
    fn link_ends(&self, name: &str) -> Result<[(String, String); 2], String> {
        let h = self
            .host(name)
            .ok_or_else(|| format!("no host named {name}"))?;
        Ok([
            (h.netns.clone(), "eth0".to_string()),
            (self.hub.clone(), h.port.clone()),
        ])
    }

    /// The commands that strike `kind` on `cut`.
    pub fn strike(&self, kind: NetKind, cut: &Cut, s: &Shaping) -> Result<Vec<NetCommand>, String> {
        Ok(match (kind, cut) {
            (NetKind::Partition, Cut::Host(h)) => {
                let p = self.port(h)?;
                vec![self.hub_rules(&[
                    format!("iifname \"{p}\" drop"),
                    format!("oifname \"{p}\" drop"),
                ])]
            }
            (NetKind::Split, Cut::Groups(a, b)) => {
                let (a, b) = (self.ports(a)?, self.ports(b)?);
                vec![self.hub_rules(&[
                    format!("iifname {a} oifname {b} drop"),
                    format!("iifname {b} oifname {a} drop"),
                ])]
            }
            (NetKind::Oneway, Cut::OneWay { from, to }) => {
                let (f, t) = (self.port(from)?, self.port(to)?);
                vec![self.hub_rules(&[format!("iifname \"{f}\" oifname \"{t}\" drop")])]
            }
            (NetKind::Loss, Cut::Everyone) => vec![self.hub_rules(&[format!(
                "numgen random mod 100 < {} drop",
                s.loss_percent.clamp(1, 100)
            )])],
            (NetKind::Reset, Cut::Host(h)) => {
                let ns = &self
                    .host(h)
                    .ok_or_else(|| format!("no host named {h}"))?
                    .netns;
                let script = "add table inet pirate; \
                     add chain inet pirate input { type filter hook input priority 0; policy accept; }; \
                     add chain inet pirate output { type filter hook output priority 0; policy accept; }; \
                     add rule inet pirate input iifname \"eth0\" meta l4proto tcp reject with tcp reset; \
                     add rule inet pirate output oifname \"eth0\" tcp flags & rst == 0 reject with tcp reset";
                vec![NetCommand::new(&["ip", "netns", "exec", ns, "nft", script])]
            }
            (NetKind::Slow, Cut::Host(h)) => self
                .link_ends(h)?
                .iter()
                .map(|(ns, dev)| {
                    NetCommand::new(&[
                        "tc",
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        &s.rate,
                        "burst",
                        TBF_BURST,
                        "latency",
                        TBF_LATENCY,
                    ])
                })
                .collect(),
            (NetKind::Delay, Cut::Host(h)) => {
                let (d, j) = (format!("{}ms", s.delay_ms), format!("{}ms", s.jitter_ms));
                self.link_ends(h)?
                    .iter()
                    .map(|(ns, dev)| {
                        NetCommand::new(&[
                            "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay",
                            &d, &j,
                        ])
                    })
                    .collect()
            }
            _ => return Err(format!("{kind:?} cannot cut {}", cut.target())),
        })
    }

    /// The commands that heal what [`strike`](Self::strike) did.
    pub fn heal(&self, kind: NetKind, cut: &Cut) -> Result<Vec<NetCommand>, String> {
        Ok(match (kind, cut) {
            (NetKind::Partition | NetKind::Split | NetKind::Oneway | NetKind::Loss, _) => {
                vec![self.hub_rules(&[])]
            }
            (NetKind::Reset, Cut::Host(h)) => {
                let ns = &self
                    .host(h)
                    .ok_or_else(|| format!("no host named {h}"))?
                    .netns;
                vec![NetCommand::new(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "nft",
                    "delete table inet pirate",
                ])]
            }
            (NetKind::Slow | NetKind::Delay, Cut::Host(h)) => self
                .link_ends(h)?
                .iter()
                .map(|(ns, dev)| {
                    NetCommand::new(&["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"])
                })
                .collect(),
            _ => return Err(format!("{kind:?} cannot cut {}", cut.target())),
        })
    }
}

/// Draws the hosts `kind` cuts, from `rng` (the nemesis's seeded one): any host for one
/// that cuts a host; for `split`, the hosts shuffled and cut at a point that leaves both
/// sides something (each side kept in the topology's order); for `oneway`, one of `links`
/// (pairs of hosts that talk: a connector and what it connects to), in either direction.
pub fn choose(
    kind: NetKind,
    hosts: &[String],
    links: &[(String, String)],
    rng: &mut impl Rng,
) -> Cut {
    match kind {
        NetKind::Partition | NetKind::Reset | NetKind::Slow | NetKind::Delay => {
            Cut::Host(hosts.choose(rng).cloned().unwrap_or_default())
        }
        NetKind::Split => {
            if hosts.len() < 2 {
                return Cut::Host(hosts.first().cloned().unwrap_or_default());
            }
            let mut shuffled = hosts.to_vec();
            shuffled.shuffle(rng);
            let at = rng.gen_range(1..hosts.len());
            let side: Vec<&String> = shuffled[..at].iter().collect();
            let (a, b): (Vec<String>, Vec<String>) =
                hosts.iter().cloned().partition(|h| side.contains(&h));
            Cut::Groups(a, b)
        }
        NetKind::Oneway => match links.choose(rng) {
            Some((x, y)) => {
                let (from, to) = if rng.gen_bool(0.5) { (x, y) } else { (y, x) };
                Cut::OneWay {
                    from: from.clone(),
                    to: to.clone(),
                }
            }
            None => Cut::Everyone,
        },
        NetKind::Loss => Cut::Everyone,
    }
}

/// The runner's action that ends a network fault in the history (`source: nemesis`).
pub const HEAL_ACTION: &str = "net_heal";

/// Events by which a role shows it noticed a peer gone: a worker or Titanic losing its broker
/// (`peer_lost`), a broker or queue expiring a worker (`worker_expired`), a Majordomo
/// disconnect, a client's retry after a timeout, a Binary Star node changing state.
const NOTICED: [&str; 5] = [
    "peer_lost",
    "worker_expired",
    "worker_disconnected",
    "retry",
    "bstar_state",
];

/// Each network fault of a history: from the runner's `nemesis` records (the strike, with
/// the `hosts` it cut, and its `net_heal`), the first event by which each role noticed it
/// while it was in force, and the clients' replies during and after it. `liveness_ms` is the
/// window the roles were configured with, reported beside the detections.
pub fn network_faults(records: &[Record], liveness_ms: f64) -> Vec<NetworkFault> {
    let mut faults: Vec<NetworkFault> = Vec::new();
    // The fault in force (one at a time), as an index into `faults`.
    let mut open: Option<usize> = None;
    for r in records {
        let event = r.event.get("event").and_then(|v| v.as_str()).unwrap_or("");
        if r.source == "nemesis" && event == "nemesis" {
            let action = r.event.get("action").and_then(|v| v.as_str()).unwrap_or("");
            if NETWORK_FAULTS.contains(&action) {
                let hosts = r
                    .event
                    .get("hosts")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|h| h.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                faults.push(NetworkFault {
                    kind: action.to_string(),
                    target: r
                        .event
                        .get("target")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string(),
                    hosts,
                    struck_ms: r.t_ms,
                    healed_ms: None,
                    liveness_ms,
                    detections: Vec::new(),
                    recovery_ms: None,
                    reply_during_ms: None,
                    replies_during: 0,
                });
                open = Some(faults.len() - 1);
            } else if action == HEAL_ACTION {
                if let Some(i) = open.take() {
                    faults[i].healed_ms = Some(r.t_ms);
                }
            }
            continue;
        }
        let is_client_reply = event == "reply" && r.source.starts_with("client");
        if let Some(i) = open {
            let f = &mut faults[i];
            let after_ms = r.t_ms - f.struck_ms;
            // A Binary Star node's first line (`reason: started`) is no detection.
            let change = event != "bstar_state" || r.event.get("from").is_some();
            if NOTICED.contains(&event)
                && change
                && !f.detections.iter().any(|d| d.source == r.source)
            {
                f.detections.push(Detection {
                    source: r.source.clone(),
                    event: event.to_string(),
                    after_ms,
                });
            }
            if is_client_reply {
                f.replies_during += 1;
                f.reply_during_ms.get_or_insert(after_ms);
            }
        } else if is_client_reply {
            // The first reply after the heal ends every healed fault still waiting for one.
            for f in faults.iter_mut().filter(|f| f.recovery_ms.is_none()) {
                if f.healed_ms.is_some() {
                    f.recovery_ms = Some(r.t_ms - f.struck_ms);
                }
            }
        }
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn plan() -> NetPlan {
        NetPlan::new(
            "7f",
            &names(&["broker", "worker-1", "worker-2", "client-1"]),
        )
        .unwrap()
    }

    #[test]
    fn each_host_gets_its_namespace_address_and_bridge_port_in_order() {
        let p = plan();
        assert_eq!(p.hub, "pirate-7f-hub");
        assert_eq!(p.hosts[0].netns, "pirate-7f-broker");
        assert_eq!(p.hosts[0].addr, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(p.hosts[3].addr, Ipv4Addr::new(10, 77, 0, 4));
        assert_eq!(p.host("worker-2").unwrap().port, "v3");
        assert_eq!(p.namespaces().last().unwrap(), "pirate-7f-hub");
        assert_eq!(p.namespaces().len(), 5);
        let many: Vec<String> = (0..=MAX_HOSTS).map(|i| format!("h{i}")).collect();
        assert!(NetPlan::new("x", &many)
            .unwrap_err()
            .contains("at most 250"));
    }

    #[test]
    fn setup_builds_everything_from_inside_the_runs_namespaces_and_teardown_removes_them() {
        let p = plan();
        let lines: Vec<String> = p.setup().iter().map(|c| c.to_string()).collect();
        assert_eq!(lines[0], "ip netns add pirate-7f-hub");
        // Every command after the first names a namespace of the run: nothing is done to
        // the machine's own.
        for l in &lines[1..] {
            assert!(
                l.contains("-n pirate-7f-")
                    || l.contains("exec pirate-7f-")
                    || l.starts_with("ip netns add pirate-7f-"),
                "{l}"
            );
        }
        assert!(lines.contains(
            &"ip -n pirate-7f-hub link add v2 type veth peer name eth0 netns pirate-7f-worker-1"
                .to_string()
        ));
        assert!(
            lines.contains(&"ip -n pirate-7f-worker-1 addr add 10.77.0.2/24 dev eth0".to_string())
        );
        let down: Vec<String> = p.teardown().iter().map(|c| c.to_string()).collect();
        assert_eq!(down.len(), 5);
        assert_eq!(down[4], "ip netns del pirate-7f-hub");
    }

    fn script(cmds: &[NetCommand]) -> String {
        cmds.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_partition_drops_both_ways_at_the_hosts_bridge_port_and_heals_by_flushing() {
        let p = plan();
        let s = script(
            &p.strike(
                NetKind::Partition,
                &Cut::Host("worker-1".into()),
                &Shaping::default(),
            )
            .unwrap(),
        );
        assert_eq!(
            s,
            "ip netns exec pirate-7f-hub nft 'flush chain bridge pirate forward; \
             add rule bridge pirate forward iifname \"v2\" drop; \
             add rule bridge pirate forward oifname \"v2\" drop'"
        );
        let h = script(
            &p.heal(NetKind::Partition, &Cut::Host("worker-1".into()))
                .unwrap(),
        );
        assert_eq!(
            h,
            "ip netns exec pirate-7f-hub nft 'flush chain bridge pirate forward'"
        );
    }

    #[test]
    fn a_split_drops_only_between_the_groups_and_a_oneway_one_direction() {
        let p = plan();
        let cut = Cut::Groups(
            names(&["broker", "worker-1"]),
            names(&["worker-2", "client-1"]),
        );
        let s = script(&p.strike(NetKind::Split, &cut, &Shaping::default()).unwrap());
        assert!(
            s.contains(r#"iifname { "v1", "v2" } oifname { "v3", "v4" } drop"#),
            "{s}"
        );
        assert!(
            s.contains(r#"iifname { "v3", "v4" } oifname { "v1", "v2" } drop"#),
            "{s}"
        );
        let one = Cut::OneWay {
            from: "worker-2".into(),
            to: "broker".into(),
        };
        let s = script(
            &p.strike(NetKind::Oneway, &one, &Shaping::default())
                .unwrap(),
        );
        assert!(
            s.ends_with(r#"add rule bridge pirate forward iifname "v3" oifname "v1" drop'"#),
            "{s}"
        );
        assert_eq!(s.matches("add rule").count(), 1);
    }

    #[test]
    fn loss_draws_in_the_kernel_and_reset_refuses_in_the_host_but_lets_its_rsts_out() {
        let p = plan();
        let shaping = Shaping {
            loss_percent: 7,
            ..Shaping::default()
        };
        let s = script(&p.strike(NetKind::Loss, &Cut::Everyone, &shaping).unwrap());
        assert!(s.contains("numgen random mod 100 < 7 drop"), "{s}");
        let s = script(
            &p.strike(NetKind::Reset, &Cut::Host("broker".into()), &shaping)
                .unwrap(),
        );
        assert!(s.starts_with("ip netns exec pirate-7f-broker nft"), "{s}");
        assert!(
            s.contains("input iifname \"eth0\" meta l4proto tcp reject with tcp reset"),
            "{s}"
        );
        assert!(
            s.contains("tcp flags & rst == 0 reject with tcp reset"),
            "{s}"
        );
        let h = script(&p.heal(NetKind::Reset, &Cut::Host("broker".into())).unwrap());
        assert_eq!(
            h,
            "ip netns exec pirate-7f-broker nft 'delete table inet pirate'"
        );
    }

    #[test]
    fn slow_and_delay_shape_both_ends_of_the_link() {
        let p = plan();
        let s = p
            .strike(
                NetKind::Slow,
                &Cut::Host("client-1".into()),
                &Shaping::default(),
            )
            .unwrap();
        assert_eq!(
            script(&s),
            "tc -n pirate-7f-client-1 qdisc add dev eth0 root tbf rate 1mbit burst 32kbit latency 400ms\n\
             tc -n pirate-7f-hub qdisc add dev v4 root tbf rate 1mbit burst 32kbit latency 400ms"
        );
        let d = p
            .strike(
                NetKind::Delay,
                &Cut::Host("client-1".into()),
                &Shaping::default(),
            )
            .unwrap();
        assert!(script(&d).contains("netem delay 100ms 20ms"));
        let h = script(
            &p.heal(NetKind::Slow, &Cut::Host("client-1".into()))
                .unwrap(),
        );
        assert!(
            h.contains("tc -n pirate-7f-hub qdisc del dev v4 root"),
            "{h}"
        );
        assert!(p
            .strike(NetKind::Slow, &Cut::Everyone, &Shaping::default())
            .is_err());
        assert!(p
            .strike(
                NetKind::Partition,
                &Cut::Host("nobody".into()),
                &Shaping::default()
            )
            .is_err());
    }

    #[test]
    fn targets_read_back_as_the_same_cut() {
        for (kind, cut) in [
            (NetKind::Partition, Cut::Host("worker-1".into())),
            (
                NetKind::Split,
                Cut::Groups(names(&["broker", "worker-1"]), names(&["client-1"])),
            ),
            (
                NetKind::Oneway,
                Cut::OneWay {
                    from: "worker-1".into(),
                    to: "broker".into(),
                },
            ),
            (NetKind::Loss, Cut::Everyone),
        ] {
            assert_eq!(
                Cut::parse(kind, &cut.target()),
                Some(cut.clone()),
                "{}",
                cut.target()
            );
        }
        assert_eq!(Cut::parse(NetKind::Split, "broker"), None);
        assert_eq!(Cut::parse(NetKind::Partition, "a | b"), None);
    }

    #[test]
    fn a_split_puts_every_host_on_exactly_one_non_empty_side_and_replays_by_seed() {
        let hosts = names(&["broker", "worker-1", "worker-2", "worker-3", "client-1"]);
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let Cut::Groups(a, b) = choose(NetKind::Split, &hosts, &[], &mut rng) else {
                panic!("not a split")
            };
            assert!(!a.is_empty() && !b.is_empty(), "seed {seed}");
            let mut all = a.clone();
            all.extend(b.iter().cloned());
            all.sort();
            let mut expected = hosts.clone();
            expected.sort();
            assert_eq!(all, expected, "seed {seed}");
            let mut again = ChaCha8Rng::seed_from_u64(seed);
            assert_eq!(
                choose(NetKind::Split, &hosts, &[], &mut again),
                Cut::Groups(a, b)
            );
        }
    }

    #[test]
    fn a_oneway_follows_a_link_in_either_direction() {
        let hosts = names(&["broker", "worker-1", "client-1"]);
        let links = vec![("worker-1".to_string(), "broker".to_string())];
        let mut seen = Vec::new();
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            match choose(NetKind::Oneway, &hosts, &links, &mut rng) {
                Cut::OneWay { from, to } => seen.push((from, to)),
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.contains(&("worker-1".into(), "broker".into())));
        assert!(seen.contains(&("broker".into(), "worker-1".into())));
    }

    #[test]
    fn rates_are_checked_as_tc_spells_them_and_commands_print_quoted() {
        assert_eq!(parse_rate("1mbit").unwrap(), "1mbit");
        assert_eq!(parse_rate("512KBIT").unwrap(), "512kbit");
        for bad in ["", "mbit", "1 mbit", "0kbit", "1mb", "-1kbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let c = NetCommand::new(&["nft", "it's", "a b"]);
        assert_eq!(c.to_string(), r"nft 'it'\''s' 'a b'");
    }

    #[test]
    fn network_faults_report_who_noticed_when_and_the_first_reply_after_the_heal() {
        let history = crate::testkit::records(
            r#"
            10.0 client-1 {"event": "reply", "seq": 1}
            100.0 nemesis {"event": "nemesis", "action": "partition", "target": "worker-1", "hosts": ["worker-1"]}
            150.0 client-1 {"event": "reply", "seq": 2}
            800.0 worker-1 {"event": "peer_lost", "reason": "silent"}
            850.0 broker {"event": "worker_expired", "worker": "w1"}
            900.0 broker {"event": "worker_expired", "worker": "w1"}
            950.0 primary {"event": "bstar_state", "state": "PRIMARY", "reason": "started"}
            1600.0 nemesis {"event": "nemesis", "action": "net_heal", "target": "worker-1"}
            1700.0 client-1 {"event": "reply", "seq": 3}
            1800.0 client-1 {"event": "reply", "seq": 4}
            2000.0 nemesis {"event": "nemesis", "action": "loss", "target": "all", "hosts": ["broker", "worker-1"]}
            "#,
        );
        let f = network_faults(&history, 750.0);
        assert_eq!(f.len(), 2);
        let p = &f[0];
        assert_eq!(
            (p.kind.as_str(), p.target.as_str()),
            ("partition", "worker-1")
        );
        assert_eq!(p.hosts, ["worker-1"]);
        assert_eq!(
            (p.struck_ms, p.healed_ms, p.liveness_ms),
            (100.0, Some(1600.0), 750.0)
        );
        let seen: Vec<(&str, &str, f64)> = p
            .detections
            .iter()
            .map(|d| (d.source.as_str(), d.event.as_str(), d.after_ms))
            .collect();
        assert_eq!(
            seen,
            [
                ("worker-1", "peer_lost", 700.0),
                ("broker", "worker_expired", 750.0)
            ]
        );
        assert_eq!((p.replies_during, p.reply_during_ms), (1, Some(50.0)));
        assert_eq!(p.recovery_ms, Some(1600.0));
        // Never healed (the run ended): no recovery.
        assert_eq!((f[1].healed_ms, f[1].recovery_ms), (None, None));
        assert_eq!(f[1].hosts, ["broker", "worker-1"]);
    }
}
