//! `--exec` end to end: `pirate server --exec CMD` as a real process, asked by a REQ socket of
//! the test's own. Big bodies stream both ways without deadlock, bytes pass unchanged, a
//! command past `--exec-timeout` dies with its whole process group, and Ctrl-C stops a
//! server whose command is still running, killing the command.

mod common;

use std::path::PathBuf;

use common::*;

/// A file name for a test command to write a pid into.
fn pidfile(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pirate-exec-{name}-{}-{}.pid",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Sends `frames` on a fresh REQ socket and returns the reply's frames (within `DEADLINE`).
fn ask(port: u16, frames: &[&[u8]]) -> Vec<Vec<u8>> {
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_rcvtimeo(DEADLINE.as_millis() as i32).unwrap();
    req.connect(&endpoint(port)).unwrap();
    req.send_multipart(frames, 0).unwrap();
    req.recv_multipart(0).expect("no reply from the server")
}

#[test]
fn a_200_kb_body_through_cat_comes_back_whole_and_the_server_serves_on() {
    let (_server, port) = start_server(&["--exec", "cat"]);
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(ask(port, &[&body]), vec![body]);
    assert_eq!(ask(port, &[b"next"]), vec![b"next".to_vec()]);
}

#[test]
fn bodies_are_bytes_and_frames_reach_the_command_one_per_line() {
    let (_server, port) = start_server(&["--exec", "cat"]);
    let binary: &[u8] = &[0xff, 0xfe, 0x00, 0x80, b'z'];
    assert_eq!(ask(port, &[binary]), vec![binary.to_vec()]);
    assert_eq!(ask(port, &[b"a", b"b"]), vec![b"a\nb".to_vec()]);
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_group_and_the_request_gets_an_error() {
    let file = pidfile("timeout");
    let cmd = format!(
        r#"read x; if [ "$x" = slow ]; then sleep 1000 & echo $! > {}; wait; fi; echo "got $x""#,
        file.display()
    );
    let (_server, port) = start_server(&["--exec", &cmd, "--exec-timeout", "300ms"]);
    let reply = String::from_utf8(ask(port, &[b"slow"]).concat()).unwrap();
    assert!(
        reply.starts_with("error:") && reply.contains("timed out after 300ms"),
        "{reply}"
    );
    let sleeper = read_pid(&file);
    let _ = std::fs::remove_file(&file);
    assert!(
        process_gone(sleeper),
        "the command's background sleep {sleeper} survived"
    );
    assert_eq!(ask(port, &[b"quick"]), vec![b"got quick".to_vec()]);
}

#[test]
fn one_ctrl_c_stops_a_server_whose_command_runs_and_kills_the_command() {
    let file = pidfile("ctrl-c");
    let cmd = format!("sleep 1000 & echo $! > {}; wait", file.display());
    let (mut server, port) = start_server(&["--exec", &cmd]);
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.connect(&endpoint(port)).unwrap();
    req.send("x", 0).unwrap();
    let sleeper = read_pid(&file);
    let _ = std::fs::remove_file(&file);
    server.signal(libc::SIGINT);
    assert_eq!(server.code(), 130, "{}", server.stderr.text());
    assert!(
        process_gone(sleeper),
        "the command's sleep {sleeper} outlived the server"
    );
}

#[test]
fn exec_timeout_needs_exec_and_a_positive_duration() {
    let (code, _, err) = run(&["server", "--exec-timeout", "1s"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["server", "--exec", "cat", "--exec-timeout", "0s"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn one_ctrl_c_stops_a_majordomo_worker_whose_command_runs_on_a_thread_and_kills_it() {
    let (_broker, port) = start_broker(&["--heartbeat", "50ms"]);
    let file = pidfile("mdp-ctrl-c");
    let cmd = format!("sleep 1000 & echo $! > {}; wait", file.display());
    let connect = endpoint(port);
    let mut worker = spawn(
        "worker",
        &[
            "worker",
            "--protocol",
            "mdp",
            "--service",
            "slow",
            "--connect",
            &connect,
            "--heartbeat",
            "50ms",
            "--exec",
            &cmd,
        ],
    );
    let _client = spawn(
        "client",
        &[
            "client",
            "--connect",
            &connect,
            "--service",
            "slow",
            "--timeout",
            "20s",
            "x",
        ],
    );
    let sleeper = read_pid(&file);
    let _ = std::fs::remove_file(&file);
    worker.signal(libc::SIGINT);
    assert_eq!(worker.code(), 130, "{}", worker.stderr.text());
    assert!(
        process_gone(sleeper),
        "the command's sleep {sleeper} outlived the worker"
    );
}

/// A failed command is logged by the server (`W: --exec failed: …` with its exit status and
/// the first line of its stderr) and counted in the summary (`exec_failed`): non-zero exit,
/// a command that does not exist (the shell's 127), and one killed by a signal.
#[test]
fn a_failed_command_is_logged_and_counted_by_the_server() {
    let cmd = "read x; case $x in die) kill -9 $$;; nope) nosuch-pirate-command;; \
               fail) echo oops >&2; exit 3;; *) echo \"$x\";; esac";
    let (mut server, port) = start_server(&["--json", "--exec", cmd]);
    assert_eq!(ask(port, &[b"fine"]), [b"fine".to_vec()]);
    let failed = ask(port, &[b"fail"]);
    assert!(failed[0].starts_with(b"error: "), "{failed:?}");
    server.wait_stderr("exited with status 3: oops");
    ask(port, &[b"nope"]);
    server.wait_stderr("exited with status 127: ");
    ask(port, &[b"die"]);
    server.wait_stderr("was killed by a signal");
    let warned = server.stderr.text();
    assert_eq!(
        warned.matches("W: --exec failed: `read x;").count(),
        3,
        "{warned}"
    );
    let summary = stop_and_summarise(&mut server);
    assert_eq!(summary["exec_failed"], 3, "{summary}");
    assert_eq!(summary["replied"], 4, "{summary}");
}

/// The same for a Majordomo worker: logged, counted, and it keeps serving.
#[test]
fn a_failed_command_is_logged_and_counted_by_a_worker() {
    let (_broker, port) = start_broker(&[]);
    let connect = endpoint(port);
    let cmd = "read x; [ \"$x\" = fail ] && { echo bad input >&2; exit 5; }; echo \"$x\"";
    let mut args = vec!["worker", "--json", "--protocol", "mdp", "--service", "sh"];
    args.extend_from_slice(&["--connect", &connect, "--exec", cmd]);
    args.extend_from_slice(&MDP_HB);
    let mut worker = spawn("worker", &args);
    let client = [
        "client",
        "--connect",
        &connect,
        "--service",
        "sh",
        "--timeout",
        "5s",
    ];
    let (code, out, err) = run(&[&client[..], &["fail", "ok"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("error: ") && out.ends_with("\nok\n"),
        "{out}"
    );
    worker.wait_stderr("exited with status 5: bad input");
    let summary = stop_and_summarise(&mut worker);
    assert_eq!(summary["exec_failed"], 1, "{summary}");
}
