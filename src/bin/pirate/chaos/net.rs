//! `pirate chaos run --net namespaces`, the part that touches the machine: checks the
//! privileges and tools up front, builds the run's network from its
//! [plan](pirate::chaos::net::NetPlan), strikes and heals network faults, and tears it all
//! down. Every command is one of the plan's `ip`/`nft`/`tc` lines, printed under `-v` as a
//! shell would take it, so a user can see and replay what the run did to the network.
//!
//! Nothing is left behind however the run ends: a normal end and Ctrl-C tear down in
//! [`Network::teardown`], a panic or an early error in its `Drop`, and a SIGKILL of the
//! runner through the watchdog (`chaos/run/watchdog.rs`), which was told every namespace name before
//! it was created.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pirate::chaos::net::{NetCommand, NetPlan, Shaping};
use pirate::error::{Error, Result};
use pirate::event::Events;

/// What `--net namespaces` adds to a run's configuration.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// How long a network fault stays before it heals (`--partition-for`).
    pub partition_for: Duration,
    /// `--loss`, `--rate`, `--delay`, `--jitter`.
    pub shaping: Shaping,
}

/// The system tools a namespaced run uses, and the Debian package of each.
const TOOLS: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("nft", "nftables"),
    ("unshare", "util-linux"),
];

/// Where a tool is: on `PATH`, or in the sbin directories a non-login root shell may lack.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks, before anything is written or started, that a namespaced run can work: root (the
/// only way: `ip netns add` bind-mounts each namespace under /run/netns, which needs
/// CAP_SYS_ADMIN in the machine's own user namespace, and an unprivileged user namespace
/// grants it only inside its own), the tools, and netem when `delay` is asked for. One line
/// saying what is missing and how to get it; the caller exits 2.
pub fn preflight(delay: bool) -> std::result::Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "--net namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN to add \
                    network namespaces under /run/netns): run it with sudo"
                .into(),
        );
    }
    for (name, package) in TOOLS {
        if tool(name).is_none() {
            return Err(format!(
                "--net namespaces needs `{name}`: install the Debian package {package}"
            ));
        }
    }
    if delay && !netem_available() {
        return Err(
            "--nemesis delay needs tc netem (the kernel's sch_netem), which this kernel \
                    lacks: leave delay out, every other kind works"
                .into(),
        );
    }
    Ok(())
}

/// Tries a netem qdisc in a throwaway network namespace (`unshare --net`: it dies with the
/// command, so nothing is left even if we are killed meanwhile).
fn netem_available() -> bool {
    let (Some(unshare), Some(tc)) = (tool("unshare"), tool("tc")) else {
        return false;
    };
    Command::new(unshare)
        .arg("--net")
        .arg(tc)
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The run's network while it exists.
pub struct Network {
    pub plan: NetPlan,
    /// Built (or partly built): teardown has something to remove.
    up: bool,
}

impl Network {
    /// Builds the network of `plan`. The caller has told the watchdog its namespaces first.
    /// On a failure, whatever was built is removed before the error returns.
    pub fn start(plan: NetPlan, events: &mut Events) -> Result<Network> {
        let mut net = Network { plan, up: true };
        for cmd in net.plan.setup() {
            if let Err(e) = run(&cmd, events) {
                net.teardown(events);
                return Err(e);
            }
        }
        let prefix = net.plan.hub.trim_end_matches("-hub");
        events.info(format!(
            "network: {} hosts in namespaces {prefix}-*, a bridge in {}, addresses 10.77.0.0/24 \
             (inside them only)",
            net.plan.hosts.len(),
            net.plan.hub
        ));
        Ok(net)
    }

    /// Removes every namespace of the run (the veth pairs, the bridge and every rule go with
    /// them). Idempotent; failures are ignored (the namespace is already gone).
    pub fn teardown(&mut self, events: &mut Events) {
        if !std::mem::take(&mut self.up) {
            return;
        }
        for cmd in self.plan.teardown() {
            if events.tracing() {
                events.info(format!("net: {cmd}"));
            }
            let _ = quiet(&cmd).status();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // An early error or a panic: remove the namespaces anyway (silently; the watchdog
        // would otherwise do it when the runner exits).
        if std::mem::take(&mut self.up) {
            for cmd in self.plan.teardown() {
                let _ = quiet(&cmd).status();
            }
        }
    }
}

fn quiet(cmd: &NetCommand) -> Command {
    let program = tool(&cmd.0[0]).unwrap_or_else(|| PathBuf::from(&cmd.0[0]));
    let mut c = Command::new(program);
    c.args(&cmd.0[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs one command of the plan (printed under `-v`); its first line of stderr is the error.
pub fn run(cmd: &NetCommand, events: &mut Events) -> Result<()> {
    if events.tracing() {
        events.info(format!("net: {cmd}"));
    }
    let out = quiet(cmd)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Internal(format!("cannot run {}: {e}", cmd.0[0])))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let why = why.lines().next().unwrap_or("failed").trim().to_string();
    Err(Error::Internal(format!("`{cmd}`: {why}")))
}

/// A run id unique on this machine while the run lasts: the runner's pid and the clock's
/// low bits (a pid is reused only after its process is gone, with its namespaces).
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:03x}", std::process::id(), nanos & 0xfff)
}
