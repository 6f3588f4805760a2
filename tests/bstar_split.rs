//! Binary Star heals after a split (`--on-split resolve`, the default; see `src/bstar.rs`,
//! "The split rule"): real `pirate server` and `pirate broker` pairs whose active node is
//! frozen (SIGSTOP) until the backup takes over on a client vote, then thawed (SIGCONT); and,
//! as root, a real partition between network namespaces (nftables drops), then healed. In
//! every case the pair must end with exactly one ACTIVE node, nobody restarted, and a client
//! that knows both endpoints answered to the end, every request in order.
//!
//! State heartbeat 100 ms (a silent peer is dead after 200 ms); client attempts of 300 ms
//! and a 200 ms settle, so a client's first attempt at the backup after the primary went
//! silent is a successful vote.

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use common::guide;
use common::*;

/// Broker and worker heartbeats: a worker's broker is dead after 500 ms of silence. Slower
/// than the usual test heartbeat (50 ms × 3), so that with both cores busy a worker does not
/// leave a live broker, which these tests would mistake for the split rule's doing.
const WORKER_HB: [&str; 4] = ["--heartbeat", "100ms", "--liveness", "5"];

/// Which kind of pair: `pirate server` nodes or `pirate broker` nodes (with a worker).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Server,
    Broker,
}

/// Starts one node of a `kind` pair on `ports` (`--json`: states are also events on
/// stdout; the human lines stay on stderr).
fn node(kind: Kind, ports: &BstarPorts, primary: bool) -> Proc {
    match kind {
        Kind::Server => start_bstar_node(ports, primary, BSTAR_HB, &["--json"]),
        Kind::Broker => {
            let (name, bind, state, peer_state) = ports.node(primary);
            let mut args = bstar_node_args("broker", primary, bind, state, peer_state, BSTAR_HB);
            args.push("--json");
            args.extend_from_slice(&WORKER_HB);
            spawn(name, &args)
        }
    }
}

/// A worker for `echo` that knows both brokers (it moves to the other on DISCONNECT or when
/// its broker goes silent).
fn pair_worker(ports: &BstarPorts) -> Proc {
    let args = pair_worker_args("pair", &ports.primary, &ports.backup, &WORKER_HB);
    spawn("worker", &args)
}

/// A client reading requests from stdin, failing over between the pair.
fn pair_client(kind: Kind, primary: &str, backup: &str) -> Proc {
    let mut args = vec![
        "client",
        "--json",
        "--connect",
        primary,
        "--connect",
        backup,
        "--settle",
        "200ms",
        "--timeout",
        "300ms",
        // Enough for a freeze, a takeover and a step-down on either side.
        "--retries",
        "12",
    ];
    if kind == Kind::Broker {
        args.extend_from_slice(&["--service", "echo"]);
    }
    spawn_with_stdin("client", &args, true)
}

/// The last state a node logged (`state: X` or `state: X (stepped down …)`).
fn last_state(node: &Proc) -> String {
    bstar_states(node)
        .last()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("-")
        .to_string()
}

/// Waits until the pair has resolved a split: one node logged `… after a split …`, and one
/// is ACTIVE and the other PASSIVE. Returns which one is active (true: the primary).
fn wait_resolved(primary: &Proc, backup: &Proc) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let split = [primary, backup]
            .iter()
            .any(|n| n.stderr.text().contains("after a split"));
        let states = (last_state(primary), last_state(backup));
        match (split, states.0.as_str(), states.1.as_str()) {
            (true, "ACTIVE", "PASSIVE") => return true,
            (true, "PASSIVE", "ACTIVE") => return false,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no resolution: {states:?}\n--- primary\n{}--- backup\n{}",
            primary.stderr.text(),
            backup.stderr.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The replies the client has printed so far.
fn reply_count(client: &Proc) -> usize {
    client.stdout.text().matches(r#""event":"reply""#).count()
}

/// Sends `from..=to` and waits for all their replies.
fn ask(client: &mut Proc, from: u64, to: u64) {
    for i in from..=to {
        client.write_stdin(&format!("{i}\n"));
    }
    let want = to as usize;
    client.wait_for(&format!("{want} replies"), |o, _| {
        o.matches(r#""event":"reply""#).count() == want
    });
}

/// The `bstar_state` events with `served_apart` in `stdout`.
fn resolutions_in(stdout: &str) -> Vec<serde_json::Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["event"] == "bstar_state" && l.get("served_apart").is_some())
        .collect()
}

/// The `bstar_state` events with `served_apart` that a node emitted on stdout, once they
/// have all been read (one per resolution it logged on stderr).
fn resolutions(node: &Proc) -> Vec<serde_json::Value> {
    node.wait_for("an event per logged resolution", |o, e| {
        resolution_lines(e) == resolutions_in(o).len()
    });
    resolutions_in(&node.stdout.text())
}

/// After a resolution: both nodes still run, exactly one is active, and the one that moved
/// said so once, in the log and as an event.
fn assert_healed(primary: &mut Proc, backup: &mut Proc, primary_active: bool) {
    for node in [&mut *primary, &mut *backup] {
        assert!(!node.has_exited(), "{}", node.stderr.text());
    }
    let (active, other) = if primary_active {
        (&*primary, &*backup)
    } else {
        (&*backup, &*primary)
    };
    assert_eq!(last_state(active), "ACTIVE");
    assert_eq!(last_state(other), "PASSIVE");
    let mut logged = 0;
    for node in [&*primary, &*backup] {
        // The event (stdout) follows its log line (stderr); they are read by two threads.
        node.wait_for("an event per logged resolution", |o, e| {
            resolution_lines(e) == resolutions_in(o).len()
        });
        logged += resolution_lines(&node.stderr.text());
        for e in resolutions(node) {
            assert!(e["ts"].is_string() && e["from"].is_string(), "{e}");
            assert!(e["served_apart"].is_u64(), "{e}");
        }
    }
    assert!(logged >= 1, "a resolution is logged");
}

/// The resolutions logged in `stderr` (`state: X (… after a split …)`).
fn resolution_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("state: ") && l.contains("after a split"))
        .count()
}

/// (a) and (b): freeze the active primary until the backup takes over on a client vote,
/// thaw it, and check that the pair heals and the client is served to the end in order.
fn frozen_active_node_thaws_and_the_pair_heals(kind: Kind) {
    let ports = BstarPorts::new();
    let mut primary = node(kind, &ports, true);
    let mut backup = node(kind, &ports, false);
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    let _worker = (kind == Kind::Broker).then(|| {
        let w = pair_worker(&ports);
        primary.wait_for("the worker's READY", |o, e| {
            o.contains("worker_ready") || e.contains("ready for service echo")
        });
        w
    });
    let mut client = pair_client(kind, &ports.primary, &ports.backup);
    ask(&mut client, 1, 3);

    primary.signal(libc::SIGSTOP);
    ask(&mut client, 4, 6);
    backup.wait_stderr("failover successful, ready as active");
    primary.signal(libc::SIGCONT);
    let primary_active = wait_resolved(&primary, &backup);
    eprintln!(
        "healed: the {} is active",
        if primary_active { "primary" } else { "backup" }
    );

    ask(&mut client, 7, 10);
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let out = client.stdout.text();
    assert_eq!(replies(&out), sequence(10), "every reply, in order");
    assert_eq!(reply_count(&client), 10);
    assert_healed(&mut primary, &mut backup, primary_active);
}

#[test]
fn a_frozen_active_server_that_thaws_after_a_takeover_heals_to_one_active() {
    frozen_active_node_thaws_and_the_pair_heals(Kind::Server);
}

#[test]
fn a_frozen_active_broker_that_thaws_after_a_takeover_heals_to_one_active_with_its_worker() {
    frozen_active_node_thaws_and_the_pair_heals(Kind::Broker);
}

/// `pirate ARGS` inside host `host` of `net`, captured like any other child.
fn spawn_in(net: &netns::Net, host: &str, args: &[&str], stdin: bool) -> Proc {
    let cmd = net.command(host, env!("CARGO_BIN_EXE_pirate"), args);
    spawn_command(host, cmd, stdin)
}

/// A server node of a pair inside `net`: clients on port 5001, states on 5003, on the
/// host's own address (each host is a namespace, so the ports never clash).
fn server_in(net: &netns::Net, host: &str, primary: bool) -> Proc {
    let peer = if primary { "backup" } else { "primary" };
    let (bind, state, peer_state) = (
        net.endpoint(host, 5001),
        net.endpoint(host, 5003),
        net.endpoint(peer, 5003),
    );
    let mut args = bstar_node_args("server", primary, &bind, &state, &peer_state, BSTAR_HB);
    args.push("--json");
    let node = spawn_in(net, host, &args, false);
    node.wait_started("server on");
    node
}

#[test]
fn a_primary_cut_off_from_backup_and_client_steps_down_when_the_network_heals() {
    // Issue 20's scenario on a real network: the primary is cut off from both the backup
    // and the client (every packet on its link dropped), the backup rightly takes over on
    // the client's vote, and when the link heals the pair must come back to one active node
    // by itself: the primary served nobody while apart, so it steps down.
    let test = "a_primary_cut_off_from_backup_and_client_steps_down_when_the_network_heals";
    if !netns::available(test) {
        return;
    }
    let net = netns::Net::new(&["primary", "backup", "client"]);
    let (mut primary, mut backup) = pair_in(&net, Kind::Server);
    let (p, b) = (net.endpoint("primary", 5001), net.endpoint("backup", 5001));
    let client_args = [
        "client",
        "--json",
        "--connect",
        &p,
        "--connect",
        &b,
        "--settle",
        "200ms",
        "--timeout",
        "300ms",
        "--retries",
        "12",
    ];
    let mut client = spawn_in(&net, "client", &client_args, true);
    ask(&mut client, 1, 3);

    net.cut("primary");
    ask(&mut client, 4, 6);
    backup.wait_stderr("failover successful, ready as active");
    // The primary, alone, stays active (nothing tells it otherwise) and serves nobody.
    primary.wait_stderr("peer silent for 200 ms (last state PASSIVE)");
    net.heal("primary");
    let primary_active = wait_resolved(&primary, &backup);
    let (ours, theirs) = (primary.stderr.text(), backup.stderr.text());
    eprintln!(
        "healed: the {} is active",
        if primary_active { "primary" } else { "backup" }
    );
    if primary_active {
        // Possible, and still the rule, seen from the backup: it served apart and its peer
        // was still ACTIVE two heartbeats after it first heard it, so it yields. Either the
        // primary did serve (request 4, sent to it after the cut and given up on, sat in the
        // client's kernel until the link healed; TCP retransmitted it and the primary served
        // it before it heard the backup), or, with both cores busy, the primary did not get
        // to read the backup's ACTIVE within those two heartbeats.
        assert!(theirs.contains("the backup yields"), "{theirs}");
    } else {
        // The usual case: the primary served nobody while cut off and steps down.
        assert!(
            ours.contains("state: PASSIVE (stepped down after a split: the peer is active too, and this node served no client while they were apart)"),
            "{ours}"
        );
    }

    ask(&mut client, 7, 10);
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), sequence(10), "in order");
    assert_healed(&mut primary, &mut backup, primary_active);
    let stepped = resolutions(if primary_active { &backup } else { &primary });
    assert_eq!(stepped.len(), 1, "{stepped:?}");
    assert_eq!(stepped[0]["state"], "PASSIVE");
    if !primary_active {
        assert_eq!(stepped[0]["served_apart"], 0);
    }
}

#[test]
fn when_both_nodes_served_clients_during_a_split_the_backup_yields_when_it_heals() {
    // Only the link between the two nodes is cut; each keeps clients of its own: one that
    // knows only the primary, one that knows only the backup (whose request is the vote
    // that makes it active). Both serve, so when the link heals the backup steps down.
    let test = "when_both_nodes_served_clients_during_a_split_the_backup_yields_when_it_heals";
    if !netns::available(test) {
        return;
    }
    let net = netns::Net::new(&["primary", "backup", "client"]);
    let (mut primary, mut backup) = pair_in(&net, Kind::Server);
    let (p, b) = (net.endpoint("primary", 5001), net.endpoint("backup", 5001));
    let only = |endpoint: &str| lone_client(&net, Kind::Server, endpoint);

    split_link(&net, &primary, &backup);
    let (code, out, err) = only(&b);
    assert_eq!((code, replies(&out)), (0, sequence(3)), "{err}");
    backup.wait_stderr("failover successful, ready as active");
    let (code, out, err) = only(&p);
    assert_eq!((code, replies(&out)), (0, sequence(3)), "{err}");
    net.heal("primary");

    let primary_active = wait_resolved(&primary, &backup);
    assert!(primary_active, "both served: the backup yields");
    backup.wait_stderr("the backup yields");
    // (The primary says "split: the peer is active too, and this node served 3 client
    // request(s)" if it reads the backup's ACTIVE before the backup yields; with both cores
    // busy it may not, so that line is not required.)
    let yielded = resolutions(&backup);
    assert_eq!(yielded.len(), 1, "{yielded:?}");
    assert_eq!(yielded[0]["served_apart"], 3);
    assert!(resolutions(&primary).is_empty(), "the primary never moved");

    // A client with both endpoints is served by the primary, in order.
    let args = [
        "client",
        "--json",
        "--connect",
        &p,
        "--connect",
        &b,
        "--settle",
        "200ms",
        "--timeout",
        "300ms",
        "--retries",
        "5",
        "--count",
        "5",
    ];
    let mut client = spawn_in(&net, "client", &args, false);
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), sequence(5));
    assert_healed(&mut primary, &mut backup, primary_active);
}

/// A `pirate server --primary` (heartbeat 1 s, the Guide's, which its programs cannot change)
/// paired with the Guide's real `bstarsrv -b`, which keeps the Guide's rule (dual active:
/// stop). Freeze ours until the Guide's backup takes over on a client vote, then thaw it.
/// Whichever hears the other's ACTIVE first decides: ours steps down (it served nobody
/// apart) and the Guide's node serves on, or the Guide's node stops and ours serves alone.
/// Either way exactly one node serves afterwards, ours never stops, and the client is
/// answered to the end, in order.
fn pirate_primary_heals_beside_the_guides_backup(lang: guide::Lang) {
    let ports = BstarPorts::new();
    let mut primary = start_bstar_node(&ports, true, "1s", &["--json"]);
    let Some(mut backup) = guide::start(
        lang,
        "bstarsrv",
        &["-b"],
        &[
            ("ZG_FRONTEND", &ports.backup),
            ("ZG_STATEPUB", &ports.backup_state),
            ("ZG_STATESUB", &ports.primary_state),
        ],
    ) else {
        return;
    };
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stdout("connected to primary");
    let args = [
        "client",
        "--json",
        "--connect",
        &ports.primary,
        "--connect",
        &ports.backup,
        // One timeout plus the settle delay outlast the Guide's 2 s peer expiry.
        "--timeout",
        "1s",
        "--settle",
        "2500ms",
        "--retries",
        "6",
    ];
    let mut client = spawn_with_stdin("client", &args, true);
    ask(&mut client, 1, 3);

    primary.signal(libc::SIGSTOP);
    ask(&mut client, 4, 6);
    primary.signal(libc::SIGCONT);
    ask(&mut client, 7, 10);
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), sequence(10), "in order");

    assert!(!primary.has_exited(), "{}", primary.stderr.text());
    // Replies 4 to 6 came from the Guide's backup, so both nodes were active: wait until the
    // pair has resolved it, one way or the other (each publishes its state once a second, so
    // either may hear the other first).
    let started = std::time::Instant::now();
    let guide_stopped = loop {
        if backup.has_exited() {
            break true;
        }
        if primary.stderr.text().contains("stepped down after a split") {
            break false;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for the pair to resolve the split\n--- ours\n{}--- the Guide's\n{}",
            primary.stderr.text(),
            backup.stdout.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let ours = primary.stderr.text();
    let why = format!(
        "--- ours\n{ours}--- the Guide's\n{}--- client\n{}",
        backup.stdout.text(),
        client.stderr.text()
    );
    eprintln!(
        "the Guide's bstarsrv {}",
        if guide_stopped { "stopped" } else { "serves" }
    );
    if guide_stopped {
        // The Guide's node heard our ACTIVE first (it publishes its new state only at its
        // next 1 s beat, bstarsrv.py's `send_state_at`, while ours publishes at once) and
        // stopped by its own rule (`BStarException` → `break`). Ours serves alone: it
        // never heard an ACTIVE peer, or it stepped down and took over on a client vote.
        assert_eq!(last_state(&primary), "ACTIVE", "{why}");
        if ours.contains("stepped down after a split") {
            assert!(ours.contains("failover successful"), "{why}");
        }
    } else {
        // Ours heard the Guide's ACTIVE first: it served nobody apart and stepped down.
        assert!(
            ours.contains("state: PASSIVE (stepped down after a split: the peer is active too"),
            "{why}"
        );
        assert_eq!(
            last_state(&primary),
            "PASSIVE",
            "the Guide's node serves: {why}"
        );
    }
}

#[test]
fn a_pirate_primary_heals_beside_the_guides_python_bstarsrv() {
    pirate_primary_heals_beside_the_guides_backup(guide::Lang::Python);
}

#[test]
fn a_pirate_primary_heals_beside_the_guides_cpp_bstarsrv() {
    pirate_primary_heals_beside_the_guides_backup(guide::Lang::Cpp);
}

/// A broker node of a pair inside `net` (clients and workers on 5001, states on 5003).
fn broker_in(net: &netns::Net, host: &str, primary: bool) -> Proc {
    let peer = if primary { "backup" } else { "primary" };
    let (bind, state, peer_state) = (
        net.endpoint(host, 5001),
        net.endpoint(host, 5003),
        net.endpoint(peer, 5003),
    );
    let mut args = bstar_node_args("broker", primary, &bind, &state, &peer_state, BSTAR_HB);
    args.push("--json");
    args.extend_from_slice(&WORKER_HB);
    spawn_in(net, host, &args, false)
}

/// A `kind` pair in `net` (each node on its own host), settled as ACTIVE and PASSIVE.
fn pair_in(net: &netns::Net, kind: Kind) -> (Proc, Proc) {
    let node = match kind {
        Kind::Server => server_in,
        Kind::Broker => broker_in,
    };
    let (primary, backup) = (node(net, "primary", true), node(net, "backup", false));
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    (primary, backup)
}

/// Cuts the link between the nodes of a pair in `net` and waits until each has noticed that
/// its peer went silent.
fn split_link(net: &netns::Net, primary: &Proc, backup: &Proc) {
    net.cut_between("primary", "backup");
    primary.wait_stderr("peer silent for 200 ms (last state PASSIVE)");
    backup.wait_stderr("peer silent for 200 ms (last state ACTIVE)");
}

/// A client on the `client` host of `net` that knows only `endpoint` (one node of a `kind`
/// pair), run to its end for 3 requests: (exit code, stdout, stderr).
fn lone_client(net: &netns::Net, kind: Kind, endpoint: &str) -> (i32, String, String) {
    let mut args = vec![
        "client",
        "--json",
        "--connect",
        endpoint,
        "--timeout",
        "300ms",
        "--retries",
        "5",
        "--count",
        "3",
    ];
    if kind == Kind::Broker {
        args.extend_from_slice(&["--service", "echo"]);
    }
    let mut client = spawn_in(net, "client", &args, false);
    let code = client.code();
    (code, client.stdout.text(), client.stderr.text())
}

/// `service_worker_ready` events a broker emitted.
fn readies(broker: &Proc) -> usize {
    broker
        .stdout
        .text()
        .matches(r#""event":"service_worker_ready""#)
        .count()
}

#[test]
fn a_broker_that_yields_after_a_split_sends_its_workers_to_the_active_broker() {
    // Both brokers serve clients of their own while the link between them is cut, each with
    // a worker of its own (each worker knows both, its own broker first). When the link
    // heals the backup yields: it disconnects its worker, which moves to the primary.
    let test = "a_broker_that_yields_after_a_split_sends_its_workers_to_the_active_broker";
    if !netns::available(test) {
        return;
    }
    let net = netns::Net::new(&["primary", "backup", "client"]);
    let (mut primary, mut backup) = pair_in(&net, Kind::Broker);
    let (p, b) = (net.endpoint("primary", 5001), net.endpoint("backup", 5001));
    let worker = |name: &str, first: &str, second: &str| {
        let args = pair_worker_args(name, first, second, &WORKER_HB);
        spawn_in(&net, "client", &args, false)
    };
    let _w1 = worker("w1", &p, &b);
    let _w2 = worker("w2", &b, &p);
    primary.wait_for("w1's READY", |o, _| o.contains("service_worker_ready"));
    backup.wait_for("w2's READY", |o, _| o.contains("service_worker_ready"));
    let only = |endpoint: &str| lone_client(&net, Kind::Broker, endpoint);

    split_link(&net, &primary, &backup);
    let (code, out, err) = only(&b);
    assert_eq!((code, replies(&out)), (0, sequence(3)), "{err}");
    let (code, out, err) = only(&p);
    assert_eq!((code, replies(&out)), (0, sequence(3)), "{err}");
    let before = readies(&primary);
    net.heal("primary");

    assert!(
        wait_resolved(&primary, &backup),
        "both served: the backup yields"
    );
    // The yielding broker disconnects its worker.
    backup.wait_for(
        "a worker_disconnected event, reason stepped_down",
        |o, _| {
            o.lines().any(|l| {
                l.contains(r#""event":"worker_disconnected""#) && l.contains("stepped_down")
            })
        },
    );
    primary.wait_for("w2's READY at the primary", |o, _| {
        o.matches(r#""event":"service_worker_ready""#).count() > before
    });

    let args = [
        "client",
        "--json",
        "--service",
        "echo",
        "--connect",
        &p,
        "--connect",
        &b,
        "--settle",
        "200ms",
        "--timeout",
        "300ms",
        "--retries",
        "5",
        "--count",
        "5",
    ];
    let mut client = spawn_in(&net, "client", &args, false);
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), sequence(5));
    assert_healed(&mut primary, &mut backup, true);
}
