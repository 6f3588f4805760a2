//! Test helper: a private network of Linux network namespaces for one test (root only), so
//! that a test can cut a real network link (nftables drops) and heal it. Every host is a
//! namespace of its own with one interface, `eth0`, at `10.231.0.N/24`, cabled by a veth pair
//! to a bridge inside a hub namespace the test created; nothing is attached to the machine's
//! own network, so the private addresses exist only inside these namespaces. Everything is
//! deleted when the [`Net`] drops, also when the test panics. Commands are `ip` and `nft`
//! (iproute2, nftables); processes run in a host with `ip netns exec`.
//!
//! Include it with `#[path = "common/netns.rs"] mod netns;` (only the tests that need it).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The nftables table a cut adds to a host; deleting it heals the host.
const CUT_TABLE: &str = "pirate_test_cut";

/// True if this process may build namespaces (root, `ip` and `nft` present). Otherwise
/// prints why the test is skipped, or fails it when `PIRATE_REQUIRE_NETNS` is set (CI).
pub fn available(test: &str) -> bool {
    let missing = if unsafe { libc::geteuid() } != 0 {
        Some("not root".to_string())
    } else {
        ["ip", "nft"]
            .iter()
            .find(|tool| {
                Command::new(tool)
                    .arg("-V")
                    .output()
                    .map_or(true, |o| !o.status.success())
            })
            .map(|tool| format!("`{tool}` is not installed"))
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("PIRATE_REQUIRE_NETNS").is_some() => {
            panic!("{test}: needs network namespaces, but {why} (PIRATE_REQUIRE_NETNS is set)")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: needs network namespaces (root, ip, nft), and {why}");
            false
        }
    }
}

/// Runs `program args…`, failing the test with its stderr if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hub with a bridge and hosts cabled to it. Dropping it deletes every namespace.
pub struct Net {
    /// Namespace names made so far (the hub first), all deleted on drop.
    made: Vec<String>,
    /// `(host name, namespace, address)`.
    hosts: Vec<(String, String, String)>,
}

impl Net {
    /// A network with one host per name, at `10.231.0.1`, `.2`, … in that order.
    pub fn new(hosts: &[&str]) -> Net {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "pirate-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            made: Vec::new(),
            hosts: Vec::new(),
        };
        let hub = format!("{prefix}-hub");
        net.add_namespace(&hub);
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &hub, "link", "set", "br0", "up"]);
        for (i, name) in hosts.iter().enumerate() {
            let ns = format!("{prefix}-{name}");
            net.add_namespace(&ns);
            // The veth pair is made inside the hub, so its names never meet the machine's.
            let port = format!("p{i}");
            run(
                "ip",
                &[
                    "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run("ip", &["-n", &hub, "link", "set", &port, "master", "br0"]);
            run("ip", &["-n", &hub, "link", "set", &port, "up"]);
            let address = format!("10.231.0.{}", i + 1);
            let cidr = format!("{address}/24");
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            net.hosts.push((name.to_string(), ns, address));
        }
        net
    }

    fn add_namespace(&mut self, ns: &str) {
        run("ip", &["netns", "add", ns]);
        self.made.push(ns.to_string());
    }

    fn host(&self, name: &str) -> (&str, &str) {
        let (_, ns, address) = self
            .hosts
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no host {name}"));
        (ns, address)
    }

    /// The address of host `name`.
    pub fn addr(&self, name: &str) -> &str {
        self.host(name).1
    }

    /// `tcp://ADDRESS:PORT` of host `name`.
    pub fn endpoint(&self, name: &str, port: u16) -> String {
        format!("tcp://{}:{port}", self.addr(name))
    }

    /// `program args…` to run inside host `name`.
    pub fn command(&self, name: &str, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.host(name).0, program])
            .args(args);
        cmd
    }

    /// Cuts host `name` off the network: nftables drops every packet in or out of its
    /// `eth0` (established TCP connections stall, as on a real partition; nothing is reset).
    pub fn cut(&self, name: &str) {
        let script = format!(
            "add table inet {CUT_TABLE}; \
             add chain inet {CUT_TABLE} input {{ type filter hook input priority 0 ; }} ; \
             add rule inet {CUT_TABLE} input iifname \"eth0\" drop ; \
             add chain inet {CUT_TABLE} output {{ type filter hook output priority 0 ; }} ; \
             add rule inet {CUT_TABLE} output oifname \"eth0\" drop"
        );
        run("ip", &["netns", "exec", self.host(name).0, "nft", &script]);
    }

    /// Cuts the link between hosts `name` and `other` only: nftables in `name` drops every
    /// packet from or to `other`'s address (both still reach everyone else).
    pub fn cut_between(&self, name: &str, other: &str) {
        let peer = self.addr(other);
        let script = format!(
            "add table inet {CUT_TABLE}; \
             add chain inet {CUT_TABLE} input {{ type filter hook input priority 0 ; }} ; \
             add rule inet {CUT_TABLE} input ip saddr {peer} drop ; \
             add chain inet {CUT_TABLE} output {{ type filter hook output priority 0 ; }} ; \
             add rule inet {CUT_TABLE} output ip daddr {peer} drop"
        );
        run("ip", &["netns", "exec", self.host(name).0, "nft", &script]);
    }

    /// Heals host `name`: removes what [`Net::cut`] or [`Net::cut_between`] added.
    pub fn heal(&self, name: &str) {
        let script = format!("delete table inet {CUT_TABLE}");
        run("ip", &["netns", "exec", self.host(name).0, "nft", &script]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace takes its interfaces (and the veth peers) with it. Errors are
        // ignored here: a drop during a panic must not panic again.
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
