//! Authentication and encryption end to end: PLAIN, CURVE and `--allow` on the roles that
//! bind, the matching credentials on the roles that connect, refused peers getting nothing,
//! `pirate chaos run --security`, and pyzmq peers interoperating with both mechanisms.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// A file in this test's scratch directory.
fn scratch(test: &str, name: &str, text: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A new key pair from `pirate generate keys`: (the file text, its public key).
fn keys() -> (String, String) {
    let (code, out, err) = run(&["generate", "keys"], None);
    assert_eq!(code, 0, "{err}");
    let public = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("public: ")
        .unwrap();
    (out.clone(), public.to_string())
}

/// Runs a client that must be refused: no reply, exit 69 after its retries.
fn assert_refused(args: &[&str]) {
    assert_refused_within(args, "300ms");
}

/// A refused client, each attempt waiting `timeout`: long enough, on a loaded machine, for the
/// ZMTP handshake to get as far as the refusal the server counts.
fn assert_refused_within(args: &[&str], timeout: &str) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", "--timeout", timeout, "--retries", "2", "x"]);
    let (code, out, err) = run(&all, None);
    assert_eq!(code, 69, "{err}");
    assert!(replies(&out).is_empty(), "a refused client got {out}");
}

/// Runs a client whose login (`--plain`, `--curve-keys`) must be refused: the server's
/// refusal reaches it through its socket monitor, and it stops with "authentication refused
/// by …" and exit status 77 at its first timeout after the refusal (1 s each, so that on a
/// loaded machine the handshake has failed by then).
fn assert_login_refused(args: &[&str]) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", "--timeout", "1s", "--retries", "2", "x"]);
    let (code, out, err) = run(&all, None);
    assert_eq!(code, 77, "{err}");
    assert!(replies(&out).is_empty(), "a refused client got {out}");
    let at = args[args.iter().position(|a| *a == "--connect").unwrap() + 1];
    assert!(
        err.contains(&format!("authentication refused by {at}: ")),
        "{err}"
    );
    assert_eq!(summary(&out)["outcome"], "auth_refused", "{out}");
}

fn assert_served(args: &[&str]) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", "--count", "3"]);
    let (code, out, err) = run(&all, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(3));
}

/// A peer without credentials that sends its whole ZMTP 3.0 greeting (mechanism `NULL`) and
/// keeps the connection open until dropped, so the server reads the greeting and refuses the
/// handshake for the mechanism. A ZeroMQ client may close first when it sees the mismatch,
/// and the server then only sees a broken pipe (libzmq's `HANDSHAKE_FAILED_NO_DETAIL`),
/// which it does not count: this peer makes the counted refusal certain.
fn null_greeting(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    peer.write_all(&greeting).unwrap();
    peer
}

/// The `refused` events a `--json` role printed so far.
fn refusals(role: &Proc) -> Vec<serde_json::Value> {
    json_lines(&role.stdout.text())
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .collect()
}

#[test]
fn plain_lets_in_the_right_password_only_and_counts_the_rest() {
    let users = scratch(
        "plain",
        "passwords",
        "# test users\nalice:open sesame\nbob:x:y\n",
    );
    let (server, port) = start_server(&["--json", "--auth-plain", &users]);
    let at = endpoint(port);
    assert_served(&["client", "--connect", &at, "--plain", "alice:open sesame"]);
    assert_served(&["client", "--connect", &at, "--plain", "bob:x:y"]);
    assert_login_refused(&["client", "--connect", &at, "--plain", "alice:wrong"]);
    assert_login_refused(&["client", "--connect", &at, "--plain", "mallory:open sesame"]);
    // No credentials: refused in the handshake itself, which the server sees only if the
    // client's socket lives until the greetings were exchanged.
    assert_refused_within(&["client", "--connect", &at], "1s");
    let _peer = null_greeting(port);
    server.wait_for("the refusals", |o, _| o.contains("unknown user"));
    let refused = refusals(&server);
    let reasons: Vec<&str> = refused
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons
        .iter()
        .any(|r| r.contains(r#"wrong password for user "alice""#)));
    assert!(reasons
        .iter()
        .any(|r| r.contains(r#"unknown user "mallory""#)));
    server.wait_for("the client without credentials", |o, _| {
        o.contains(r#""mechanism":"handshake""#)
    });
    let totals: Vec<u64> = refusals(&server)
        .iter()
        .map(|e| e["total"].as_u64().unwrap())
        .collect();
    assert_eq!(
        totals,
        (1..=totals.len() as u64).collect::<Vec<_>>(),
        "counted"
    );
    // The role still serves its users afterwards.
    assert_served(&["client", "--connect", &at, "--plain", "alice:open sesame"]);
    assert!(server
        .stderr
        .text()
        .contains("peers log in with PLAIN (2 users)"));
}

#[test]
fn curve_serves_workers_and_clients_through_a_broker_and_an_allow_list_narrows_it() {
    let (server_keys, server_public) = keys();
    let (worker_keys, worker_public) = keys();
    let (client_keys, client_public) = keys();
    let listed = format!("{server_keys}client: {worker_public}\nclient: {client_public}\n");
    let broker_file = scratch("curve", "broker.keys", &listed);
    let worker_file = scratch("curve", "worker.keys", &worker_keys);
    let client_file = scratch("curve", "client.keys", &client_keys);
    let (broker, port) = start_broker(&["--json", "--auth-curve", &broker_file]);
    let at = endpoint(port);
    let curve = ["--curve-server", server_public.as_str()];
    let mut worker_args = vec!["worker", "--protocol", "mdp", "--service", "echo"];
    worker_args.extend_from_slice(&["--connect", &at, "--curve-keys", &worker_file]);
    worker_args.extend_from_slice(&curve);
    let _worker = spawn("worker", &worker_args);
    broker.wait_stdout(r#""event":"service_worker_ready""#);
    let client = ["client", "--connect", &at, "--service", "echo"];
    assert_served(&[&client[..], &curve, &["--curve-keys", &client_file]].concat());
    // A fresh key is not on the list; a wrong server key never completes the handshake.
    assert_login_refused(&[&client[..], &curve].concat());
    let (_, other_public) = keys();
    assert_login_refused(&[&client[..], &["--curve-server", &other_public]].concat());
    // Without CURVE at all: refused too.
    assert_refused(&client);
    broker.wait_for("three kinds of refusal", |o, _| {
        o.contains("is not in the allow-list") && o.contains("cryptographic error")
    });
    assert_served(&[&client[..], &curve, &["--curve-keys", &client_file]].concat());
}

/// A key pair whose public key begins with `-`, as one in 85 Z85 keys does: (file text, key).
fn keys_beginning_with_a_dash() -> (String, String) {
    loop {
        let pair = pirate::auth::credentials::KeyPair::generate().unwrap();
        let public = pirate::auth::credentials::z85(&pair.public);
        if public.starts_with('-') {
            return (pair.to_text(), public);
        }
    }
}

#[test]
fn keys_and_passwords_beginning_with_a_dash_are_flag_values() {
    // `--curve-server -JUF…` once read as an unknown flag `-J` (exit 2): a CI run lost one
    // in 85 tests to it, and so would any user whose key happens to start that way.
    let (server_keys, server_public) = keys_beginning_with_a_dash();
    let file = scratch("dash", "server.keys", &server_keys);
    let (_server, port) = start_server(&["--auth-curve", &file]);
    let at = endpoint(port);
    assert_served(&["client", "--connect", &at, "--curve-server", &server_public]);
    let users = scratch("dash", "passwords", "-alice:-pw\n");
    let (_server, port) = start_server(&["--auth-plain", &users]);
    let at = endpoint(port);
    assert_served(&["client", "--connect", &at, "--plain", "-alice:-pw"]);
}

#[test]
fn allow_refuses_addresses_outside_its_blocks_on_both_sides_of_a_queue() {
    let hb = ["--heartbeat", "50ms"];
    let (queue, front, back) = start_queue(&[
        "--json",
        hb[0],
        hb[1],
        "--allow",
        "10.0.0.0/8",
        "--allow",
        "::1",
    ]);
    let _worker = spawn(
        "worker",
        &["worker", "--connect", &endpoint(back), hb[0], hb[1]],
    );
    assert_refused(&["client", "--connect", &endpoint(front)]);
    queue.wait_for("127.0.0.1 refused", |o, _| {
        o.contains(r#""address":"127.0.0.1""#) && o.contains("is not in --allow")
    });
    assert!(
        !queue.stdout.text().contains("worker_ready"),
        "the worker got in"
    );
    drop(queue);
    let (queue, front, back) = start_queue(&["--json", hb[0], hb[1], "--allow", "127.0.0.0/8"]);
    let _worker = spawn(
        "worker",
        &["worker", "--connect", &endpoint(back), hb[0], hb[1]],
    );
    queue.wait_stdout(r#""event":"worker_ready""#);
    assert_served(&["client", "--connect", &endpoint(front)]);
}

#[test]
fn a_binary_star_pair_speaks_curve_to_each_other_and_to_clients() {
    let (server_keys, public) = keys();
    let file = scratch("bstar", "server.keys", &server_keys);
    let ports = BstarPorts::new();
    let security = [
        "--auth-curve",
        file.as_str(),
        "--curve-server",
        public.as_str(),
    ];
    let primary = start_bstar_node(&ports, true, "100ms", &security);
    let backup = start_bstar_node(&ports, false, "100ms", &security);
    // Each learns the other's state over the CURVE PUB/SUB pair, or would not settle.
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    let client = [
        "client",
        "--connect",
        &ports.primary,
        "--connect",
        &ports.backup,
    ];
    assert_served(&[&client[..], &["--curve-server", &public]].concat());
    assert_refused(&["client", "--connect", &ports.primary]);
}

#[test]
fn chaos_run_secures_a_whole_topology() {
    for (pattern, security, extra) in [
        ("majordomo", "curve", &["--proxy", "clients"][..]),
        ("paranoid", "plain", &[][..]),
        ("titanic", "plain", &[][..]),
    ] {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-chaos-{pattern}"));
        let _ = std::fs::remove_dir_all(&out);
        let out_arg = out.display().to_string();
        let mut args = vec!["chaos", "run", "--json", "--pattern", pattern];
        args.extend_from_slice(&["--security", security, "--out", &out_arg]);
        args.extend_from_slice(&["--duration", "1s", "--nemesis-interval", "0s"]);
        args.extend_from_slice(&["--requests", "5", "--clients", "1", "--workers", "1"]);
        args.extend_from_slice(&["--seed", "3"]);
        args.extend_from_slice(extra);
        let (code, stdout, err) = run(&args, None);
        assert_eq!(code, 0, "{pattern}: {err}");
        let s = summary(&stdout);
        assert_eq!(s["valid"], true, "{pattern}: {s}");
        assert_eq!(s["findings"]["replied"], 5, "{pattern}: {s}");
        // Every child said what it enforced or presented (its log is its stderr).
        let mut logs = 0;
        for entry in std::fs::read_dir(out.join("logs")).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(child) = name.strip_suffix(".log") {
                let log = std::fs::read_to_string(entry.path()).unwrap();
                let want = if security == "curve" {
                    "CURVE"
                } else {
                    "PLAIN"
                };
                assert!(
                    log.contains("security: ") && log.contains(want),
                    "{child}: {log}"
                );
                logs += 1;
            }
        }
        assert!(logs >= 3, "{pattern}: {logs} logs");
    }
}

#[test]
fn generate_keys_prints_a_pair_in_text_or_json() {
    let (text, public) = keys();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(public.len(), 40);
    assert!(lines[1].starts_with("secret: ") && lines[1].len() == 48);
    let (code, out, _) = run(&["--json", "generate", "keys"], None);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["public"].as_str().unwrap().len(), 40);
    assert_ne!(json["public"], public, "a new pair each time");
}

#[test]
fn bad_security_flags_are_usage_errors() {
    let missing = "/nonexistent/pirate-passwords";
    let (a, b) = (keys().0, keys().0);
    let mixed = format!(
        "{}\n{}\n",
        a.lines().next().unwrap(),
        b.lines().nth(1).unwrap()
    );
    let mixed = scratch("usage", "mixed.keys", &mixed);
    let empty = scratch("usage", "empty", "# nobody\n");
    for (args, needle) in [
        (
            vec!["server", "--auth-plain", missing],
            "--auth-plain /nonexistent",
        ),
        (
            vec!["server", "--auth-plain", &empty],
            "nobody could log in",
        ),
        (vec!["broker", "--auth-curve", &mixed], "does not belong"),
        (vec!["queue", "--allow", "10.0.0.0/33"], "invalid address"),
        (vec!["client", "--curve-server", "short"], "not a CURVE key"),
        (vec!["client", "--plain", "nocolon"], "USER:PASSWORD"),
        (vec!["server", "--plain", "a:b"], "for Binary Star nodes"),
        (vec!["worker", "--curve-keys", &empty], "--curve-server"),
        (vec!["generate", "keys", "--out", "x"], "redirect"),
    ] {
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Python with pyzmq, or `None`: then the test says so and passes, unless
/// `PIRATE_REQUIRE_PYZMQ` is set, as `.ci/run` does after installing pyzmq.
fn python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import zmq; assert zmq.has('curve')"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("PIRATE_REQUIRE_PYZMQ").is_none(),
            "PIRATE_REQUIRE_PYZMQ is set but python3 cannot import pyzmq with CURVE"
        );
        eprintln!("SKIPPED: python3 with pyzmq (and CURVE) is not installed");
    }
    ok.then_some("python3")
}

/// Runs a Python script with `args`; returns (exit code, stdout, stderr).
fn python_run(python: &str, script: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pyzmq REQ client: argv = endpoint, mechanism (plain|curve), then user password or
/// server-public-key. Prints the reply, or exits 3 when none comes in 2 s.
const PY_CLIENT: &str = r#"
import sys, zmq
endpoint, mechanism, *rest = sys.argv[1:]
s = zmq.Context().socket(zmq.REQ)
s.linger = 0
if mechanism == "plain":
    s.plain_username, s.plain_password = rest[0].encode(), rest[1].encode()
else:
    s.curve_serverkey = rest[0].encode()
    s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
s.connect(endpoint)
s.send(b"from python")
if not s.poll(2000):
    sys.exit(3)
print(s.recv().decode())
"#;

/// A pyzmq CURVE REP server that answers one request: argv = endpoint, secret key.
const PY_SERVER: &str = r#"
import sys, zmq
endpoint, secret = sys.argv[1:]
s = zmq.Context().socket(zmq.REP)
s.linger = 0
s.curve_server = True
s.curve_secretkey = secret.encode()
s.bind(endpoint)
print("bound", flush=True)
if not s.poll(10000):
    sys.exit(3)
s.send(b"python saw " + s.recv())
"#;

#[test]
fn pyzmq_peers_interoperate_with_plain_and_curve() {
    let Some(python) = python() else { return };
    // pyzmq clients to pirate servers.
    let users = scratch("pyzmq", "passwords", "py:thon\n");
    let (_plain, port) = start_server(&["--auth-plain", &users]);
    let at = endpoint(port);
    let (code, out, err) = python_run(python, PY_CLIENT, &[&at, "plain", "py", "thon"]);
    assert_eq!((code, out.trim()), (0, "from python"), "{err}");
    let (code, _, _) = python_run(python, PY_CLIENT, &[&at, "plain", "py", "wrong"]);
    assert_eq!(code, 3, "a wrong password got a reply");
    let (server_keys, public) = keys();
    let file = scratch("pyzmq", "server.keys", &server_keys);
    let (_curve, port) = start_server(&["--auth-curve", &file]);
    let at = endpoint(port);
    let (code, out, err) = python_run(python, PY_CLIENT, &[&at, "curve", &public]);
    assert_eq!((code, out.trim()), (0, "from python"), "{err}");
    // A pirate client to a pyzmq CURVE server.
    let secret = server_keys
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("secret: ")
        .unwrap();
    let at = endpoint(free_port());
    let mut py = Command::new(python)
        .arg("-c")
        .arg(PY_SERVER)
        .args([at.as_str(), secret])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "bound");
    let (code, out, err) = run(
        &["client", "--connect", &at, "--curve-server", &public, "hi"],
        None,
    );
    let _ = py.kill();
    let _ = py.wait();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "python saw hi\n");
}

/// A worker whose login the broker refuses says so each time its broker goes silent, and
/// keeps retrying with its back-off (the refusal reaches it through its socket monitor).
#[test]
fn a_refused_worker_says_so_and_keeps_retrying() {
    let users = scratch("worker", "passwords", "alice:open sesame\n");
    let (_broker, port) = start_broker(&["--auth-plain", &users]);
    let at = endpoint(port);
    let mut worker = service_worker(
        "echo",
        &at,
        &["--plain", "alice:wrong", "--heartbeat", "100ms"],
    );
    let line = format!("authentication refused by {at}: ");
    worker.wait_for("two refusals", |_, e| e.matches(&line).count() >= 2);
    assert!(worker.stderr.text().contains("; retrying in "));
    assert!(!worker.stderr.text().contains("registered"));
    worker.signal(libc::SIGINT);
    assert_eq!(worker.code(), 130);
}
