//! Connection floods (issue 21): a peer that holds TCP connections to a role that binds,
//! connections that completed the ZMTP greeting (its 64 bytes written by hand) or half-open
//! ones (nothing sent), past the descriptor limit or not, must neither pin a core nor keep a
//! new legitimate client from being served. The roles run with a lowered descriptor limit
//! (setrlimit before exec), so that a flood of a few hundred connections reaches it. The
//! budget is libzmq patch 0002 (vendor/zmq-sys/patches) driven by `src/connections.rs`.
//!
//! Every 127.x.y.z address is loopback on Linux: a flood from 127.0.0.2 is another peer
//! address than the legitimate clients' 127.0.0.1.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;

/// The ZMTP 3.0 greeting of a NULL-mechanism peer (RFC 23/ZMTP): signature `FF`, 8 bytes of
/// padding, `7F`; version 3.0; mechanism `NULL` padded with zeros to 20 bytes; as-server 0;
/// 31 bytes of filler. A peer that sends it and nothing more (no READY) has done what costs
/// the role its buffers, and never finishes the handshake.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// `pirate ARGS` with a descriptor limit of `soft` (hard: `hard`), set in the child before
/// exec.
fn with_descriptor_limit(args: &[&str], soft: u64, hard: u64) -> Command {
    let mut cmd = pirate(args);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A TCP connection from `from` to 127.0.0.1:`port` (None if it failed), with the greeting
/// written if `greet`. Whether the role keeps or refuses it, the connect itself succeeds:
/// the kernel completes it before the role accepts.
fn connect_from(from: Ipv4Addr, port: u16, greet: bool) -> Option<TcpStream> {
    let addr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns (handed to TcpStream,
    // which closes it, or closed here on failure).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let local = addr(from, 0);
        let remote = addr(Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            libc::close(fd);
            return None;
        }
        let stream = TcpStream::from_raw_fd(fd);
        if greet {
            use std::io::Write;
            let _ = (&stream).write_all(&greeting());
        }
        Some(stream)
    }
}

/// `n` connections from `from`, every other one greeting.
fn flood(from: Ipv4Addr, port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| connect_from(from, port, i % 2 == 0))
        .collect()
}

/// The CPU time (user + system) process `pid` has used so far, from /proc/PID/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After "pid (comm) ": state is field 3, utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// How long the flood is held while the role's CPU time is measured, and the most it may
/// use meanwhile: 15% of one core. A listener that spins (4.3.5 at EMFILE) uses the whole
/// period, or a good share of it with both cores busy; an idle role a few milliseconds.
/// This bounds spinning; it says nothing about speed.
const HELD: Duration = Duration::from_secs(2);
const IDLE_CPU: Duration = Duration::from_millis(300);

/// The CPU time `pid` uses over [`HELD`].
fn cpu_while_held(pid: i32) -> Duration {
    let before = cpu_time(pid);
    thread::sleep(HELD);
    let used = cpu_time(pid) - before;
    eprintln!("CPU time over {HELD:?} of flood: {used:?}");
    used
}

/// `connection_refused` lines traced (`-v --json`) for `reason`.
fn traced(stdout: &str, reason: &str) -> usize {
    let reason = format!(r#""reason":"{reason}""#);
    stdout
        .lines()
        .filter(|l| l.contains(r#""event":"connection_refused""#) && l.contains(&reason))
        .count()
}

/// Whether the role closed `stream` (EOF or reset) rather than keeping it open and silent:
/// read until one or the other, 500 ms of silence meaning open.
fn closed_by_role(mut stream: &TcpStream) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A legitimate Majordomo client asks `echo` three times through the broker on `port`.
fn client_is_served(port: u16) {
    let connect = endpoint(port);
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--service",
            "echo",
            "--connect",
            &connect,
            "1",
            "2",
            "3",
        ],
        None,
    );
    assert_eq!(code, 0, "the client was not served: {err}");
    assert_eq!(replies(&out), sequence(3));
}

/// A broker with the descriptor limit `limit` (soft and hard) and `extra` flags, -v, --json,
/// with an echo worker registered (connected before any flood, from 127.0.0.1).
fn broker_with_limit(limit: u64, extra: &[&str]) -> (Proc, u16, Proc) {
    let port = free_port();
    let bind = endpoint(port);
    let mut args = vec!["broker", "--bind", bind.as_str(), "--json", "-v"];
    args.extend_from_slice(&MDP_HB);
    args.extend_from_slice(extra);
    let broker = spawn_command("broker", with_descriptor_limit(&args, limit, limit), false);
    broker.wait_for("the broker to bind", |o, _| {
        o.contains(r#""event":"started""#)
    });
    let worker = mdp_worker("w", port, "mdp", "echo", &[]);
    broker.wait_for("the worker", |o, _| o.contains("worker_ready"));
    (broker, port, worker)
}

#[test]
fn a_flood_from_one_address_past_the_descriptor_limit_leaves_the_broker_serving_and_idle() {
    // 512 descriptors: the default budget is (512 - 256) / 3 = 85 connections per bound
    // socket, a quarter of them (22) per address. A handshake timeout longer than the test,
    // so that only the budget protects the broker.
    let (mut broker, port, _worker) = broker_with_limit(512, &["--handshake-timeout", "1m"]);
    broker.wait_for("-v to state the limit and the budget", |_, e| {
        e.contains("descriptor limit 512;")
            && e.contains("--max-connections 85,")
            && e.contains("--max-connections-per-address 22,")
    });
    // 600 connections from one other address, more than the broker has descriptors.
    let held = flood(Ipv4Addr::new(127, 0, 0, 2), port, 600);
    // Connects complete before the broker accepts, refused or not; a rare one fails under
    // load (the backlog full), and then never reached the broker.
    assert!(held.len() >= 500, "only {} connects completed", held.len());
    broker.wait_for("refusals per address", |o, _| {
        traced(o, "max_connections_per_address") >= 100
    });
    let used = cpu_while_held(broker.pid());
    assert!(
        used < IDLE_CPU,
        "the broker used {used:?} of CPU in {HELD:?} while flooded"
    );
    client_is_served(port);
    let summary = stop_and_summarise(&mut broker);
    let refused = &summary["connections_refused"];
    // All but 22 refused, whether they connected in the end or not.
    let per_address = refused["max_connections_per_address"].as_u64().unwrap();
    assert!(
        (held.len() as u64 - 22..=578).contains(&per_address),
        "{} connected: {summary}",
        held.len()
    );
    assert_eq!(refused["max_connections"], 0, "{summary}");
    assert_eq!(refused["total"], per_address, "{summary}");
    drop(held);
}

#[test]
fn out_of_descriptors_the_broker_sheds_newcomers_instead_of_spinning() {
    // No budget at all: the flood takes every descriptor the broker has (128), and accept
    // fails with EMFILE. libzmq 4.3.5 then spun at 100% of a core for as long as one
    // connection waited in the backlog; the patched listener accepts it on its reserve
    // descriptor and closes it. Greeting-only peers are dropped after the handshake timeout,
    // which gives their descriptors back to the client that comes next.
    let (mut broker, port, _worker) = broker_with_limit(
        128,
        &[
            "--max-connections",
            "0",
            "--max-connections-per-address",
            "0",
            "--handshake-timeout",
            "3s",
        ],
    );
    broker.wait_for("-v to state that there is no limit", |_, e| {
        e.contains("--max-connections no limit, --max-connections-per-address no limit")
    });
    let held = flood(Ipv4Addr::new(127, 0, 0, 2), port, 300);
    broker.wait_for("newcomers shed", |o, _| traced(o, "no_descriptors") >= 1);
    let used = cpu_while_held(broker.pid());
    assert!(
        used < IDLE_CPU,
        "the broker used {used:?} of CPU in {HELD:?} at EMFILE"
    );
    client_is_served(port);
    let summary = stop_and_summarise(&mut broker);
    let refused = &summary["connections_refused"];
    assert!(
        refused["no_descriptors"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        refused["handshake_timeout"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    drop(held);
}

#[test]
fn max_connections_closes_the_connections_past_it_and_traces_them() {
    let port = free_port();
    let bind = endpoint(port);
    let mut server = spawn(
        "server",
        &[
            "server",
            "--bind",
            &bind,
            "-v",
            "--max-connections",
            "4",
            "--max-connections-per-address",
            "0",
        ],
    );
    server.wait_stderr("server on");
    let held = flood(Ipv4Addr::LOCALHOST, port, 10);
    server.wait_for("six refusals traced", |_, e| {
        e.matches(": max_connections (").count() >= 6
    });
    assert!(
        server
            .stderr
            .text()
            .contains(&format!("W: closed a connection from 127.0.0.1 to {bind}")),
        "{}",
        server.stderr.text()
    );
    let closed = held.iter().filter(|s| closed_by_role(s)).count();
    assert_eq!(closed, 6, "four kept, six closed");
    drop(held);
    // The four give their places back when they go: a client is served (after a refusal or
    // two if it comes before the server has seen them go; it reconnects).
    let (code, out, err) = run(&["client", "--connect", &bind, "1"], None);
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    server.signal(libc::SIGINT);
    assert_eq!(server.code(), 130);
    let err = server.stderr.text();
    let line = err
        .lines()
        .find(|l| l.starts_with("connections refused: "))
        .unwrap_or_else(|| panic!("no refusals in the summary: {err}"));
    let max: u64 = line
        .split("(max connections ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(max >= 6, "{line}");
    assert!(line.contains("per address 0, no descriptors 0"), "{line}");
}

#[test]
fn per_address_limit_and_handshake_timeout_free_what_a_half_open_flood_holds() {
    // Soft limit 256, hard 1024: the role raises it, and says so.
    let port = free_port();
    let bind = endpoint(port);
    let args = [
        "server",
        "--bind",
        &bind,
        "--json",
        "-v",
        "--max-connections-per-address",
        "3",
        "--handshake-timeout",
        "300ms",
    ];
    let mut server = spawn_command("server", with_descriptor_limit(&args, 256, 1024), false);
    server.wait_for("the server to bind", |o, _| {
        o.contains(r#""event":"started""#)
    });
    server.wait_for("-v to state the raised limit and the budget", |_, e| {
        e.contains(
            "I: descriptor limit 1024 (raised from 256); each bound TCP socket: \
             --max-connections 256, --max-connections-per-address 3, --handshake-timeout 300ms",
        )
    });
    // Five connections that never send a byte: three kept, two refused at once; the three
    // are dropped when their handshake times out.
    let held: Vec<TcpStream> = (0..5)
        .filter_map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 3), port, false))
        .collect();
    assert_eq!(held.len(), 5);
    server.wait_for("the half-open ones dropped", |o, _| {
        traced(o, "max_connections_per_address") == 2 && traced(o, "handshake_timeout") == 3
    });
    let closed = held.iter().filter(|s| closed_by_role(s)).count();
    assert_eq!(closed, 5, "every one of them is closed now");
    let (code, out, err) = run(&["client", "--connect", &bind, "1"], None);
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    let summary = stop_and_summarise(&mut server);
    let refused = &summary["connections_refused"];
    assert_eq!(refused["max_connections_per_address"], 2, "{summary}");
    assert_eq!(refused["handshake_timeout"], 3, "{summary}");
    assert_eq!(refused["total"], 5, "{summary}");
    check_json_lines("server", &server.stdout.text());
}

#[test]
fn a_flood_on_both_sides_of_a_queue_leaves_it_serving() {
    // Each bound socket has a budget of its own: 2 per address here, on the frontend and on
    // the backend. The worker and the client come from 127.0.0.1, the flood from 127.0.0.4.
    let (mut queue, front, back) = start_queue(&[
        "--json",
        "-v",
        "--heartbeat",
        "50ms",
        "--max-connections-per-address",
        "2",
    ]);
    let held: Vec<TcpStream> = [front, back]
        .iter()
        .flat_map(|&port| flood(Ipv4Addr::new(127, 0, 0, 4), port, 6))
        .collect();
    queue.wait_for("4 refused on each side", |o, _| {
        traced(o, "max_connections_per_address") == 8
    });
    let connect = endpoint(back);
    let _worker = spawn(
        "worker",
        &[
            "worker",
            "--json",
            "--connect",
            &connect,
            "--heartbeat",
            "50ms",
        ],
    );
    queue.wait_for("the worker", |o, _| o.contains(r#""event":"worker_ready""#));
    let (code, out, err) = run(&["client", "--connect", &endpoint(front), "1", "2"], None);
    assert_eq!((code, out.as_str()), (0, "1\n2\n"), "{err}");
    let summary = stop_and_summarise(&mut queue);
    assert_eq!(
        summary["connections_refused"]["max_connections_per_address"], 8,
        "{summary}"
    );
    assert_eq!(summary["routed"], 2, "{summary}");
    drop(held);
}
