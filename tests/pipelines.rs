//! A client in a shell pipeline, and careless input: bytes on stdin and stdout unchanged,
//! `-0` and `--whole`, a reader that closes stdout (`| head -1`), Ctrl-C while stdin stays
//! open, the progress bar on a terminal, and `generate` and `titanic --dir` mistakes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::*;

/// A child killed and reaped on drop, whatever the test did.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `stdin` bytes, to the end or DEADLINE; returns (code, stdout, stderr).
fn run_bytes(mut cmd: Command, stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Guard(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the pirate binary"),
    );
    let mut input = child.0.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (mut out, mut err) = (
        child.0.stdout.take().unwrap(),
        child.0.stderr.take().unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), String::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_string(&mut e);
        let _ = tx.send((o, e));
    });
    let (stdout, stderr) = rx
        .recv_timeout(DEADLINE)
        .expect("pirate did not finish in time");
    let code = child.0.wait().unwrap().code().unwrap_or(-1);
    (code, stdout, stderr)
}

fn client(port: u16, extra: &[&str]) -> Command {
    let connect = endpoint(port);
    let mut args = vec!["client", "--connect", connect.as_str()];
    args.extend_from_slice(extra);
    pirate(&args)
}

#[test]
fn binary_lines_are_sent_unchanged_and_their_replies_come_back_byte_for_byte() {
    let (_server, port) = start_server(&[]);
    let input = b"first\n\xff\xfe\x01bin\nlast\n";
    let (code, out, err) = run_bytes(client(port, &["-q"]), input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, input,
        "three requests, three replies, the bytes as they were"
    );
    let (code, out, err) = run_bytes(client(port, &["--json"]), input);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).expect("JSON is UTF-8");
    assert_eq!(summary(&out)["requests"], 3);
    assert_eq!(
        replies(&out)[1],
        "\u{fffd}\u{fffd}\u{1}bin",
        "JSON shows them as text"
    );
}

#[test]
fn nul_delimited_requests_keep_their_newlines_and_replies_end_in_nul() {
    let (_server, port) = start_server(&[]);
    let input = b"a\nb\0c\r\n\0last";
    let (code, out, err) = run_bytes(client(port, &["-0", "-q"]), input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"a\nb\0c\r\n\0last\0");
    let (_, out, _) = run_bytes(client(port, &["--null", "--json"]), input);
    assert_eq!(summary(&String::from_utf8(out).unwrap())["requests"], 3);
}

#[test]
fn whole_sends_all_of_stdin_as_one_request_and_prints_its_reply_as_it_is() {
    let (_server, port) = start_server(&[]);
    let input = b"line one\nline two\n\0\xff tail\n";
    let (code, out, err) = run_bytes(client(port, &["--whole", "-q"]), input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, input, "no newline added, nothing cut");
    let (_, out, _) = run_bytes(client(port, &["--whole", "--json"]), input);
    assert_eq!(summary(&String::from_utf8(out).unwrap())["requests"], 1);
}

#[test]
fn input_flags_that_cannot_go_together_are_usage_errors() {
    for args in [
        ["client", "--whole", "-0"],
        ["client", "--whole", "x"],
        ["client", "-0", "--count=3"],
    ] {
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
}

#[test]
fn a_request_longer_than_max_message_is_not_sent_and_the_run_fails() {
    let (_server, port) = start_server(&[]);
    let long = "x".repeat(300);
    let input = format!("short\n{long}\nnever\n");
    let (code, out, err) = run_bytes(
        client(port, &["-q", "--max-message", "256"]),
        input.as_bytes(),
    );
    assert_eq!(
        out, b"short\n",
        "the requests before it are served, none after"
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("longer than 256 bytes"), "{err}");
}

#[test]
fn a_client_whose_stdout_closes_stops_at_once_and_quietly() {
    let (mut server, port) = start_server(&["--json"]);
    let mut child = Guard(
        client(port, &["--count", "50000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // `head -1`: read one line, then close the pipe.
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "1\n");
    drop(stdout);
    let mut stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let err = rx.recv_timeout(DEADLINE).expect("the client kept running");
    let code = child.0.wait().unwrap().code();
    assert_eq!(code, Some(141), "{err}");
    assert!(!err.contains("error"), "no error message: {err}");
    assert!(!err.contains("summary"), "quiet: {err}");
    let served = stop_and_summarise(&mut server)["requests"]
        .as_u64()
        .unwrap();
    assert!(
        served < 5_000,
        "the server served {served} of 50000: the client went on sending"
    );
}

/// A client with a stdin pipe that stays open and silent gets Ctrl-C: exit 130, without
/// waiting for a next line that never comes.
fn interrupted_while_reading_stdin(name: &str, args: &[&str], started: &str) {
    let mut client = spawn_with_stdin(name, args, true);
    client.wait_stderr(started);
    client.signal(libc::SIGINT);
    assert_eq!(client.code(), 130, "{name}: {}", client.stderr.text());
    assert!(
        client.stderr.text().contains("summary: interrupted"),
        "{name}"
    );
}

#[test]
fn ctrl_c_stops_every_client_at_once_while_stdin_stays_open() {
    let (_server, port) = start_server(&[]);
    let lazy = endpoint(port);
    interrupted_while_reading_stdin("lazy", &["client", "--connect", &lazy], "client on");
    let free = endpoint(free_port());
    interrupted_while_reading_stdin(
        "freelance",
        &["client", "--freelance", "--connect", &free],
        "client on",
    );
    // No broker needed: the client blocks on its stdin before it asks anything.
    interrupted_while_reading_stdin(
        "titanic",
        &[
            "client",
            "--titanic",
            "--service",
            "echo",
            "--connect",
            &free,
        ],
        "client (titanic",
    );
}

/// `sh -c SCRIPT` under `script(1)`, so that pirate's stderr is a terminal, with what the
/// terminal shows captured as it comes. The shell writes its pid (pirate's, after `exec`) to
/// `pidfile` first.
struct Terminal {
    child: Guard,
    shown: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ended: mpsc::Receiver<()>,
}

impl Terminal {
    fn run(script: &str, pidfile: &Path) -> Self {
        let wrapped = format!("echo $$ > {}; exec {script}", pidfile.display());
        let mut child = Guard(
            Command::new("script")
                .args(["-qec", &format!("sh -c '{wrapped}'"), "/dev/null"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("script(1) is needed for the terminal tests"),
        );
        let mut out = child.0.stdout.take().unwrap();
        let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, ended) = mpsc::channel();
        let sink = shown.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = out.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
            let _ = tx.send(());
        });
        Terminal {
            child,
            shown,
            ended,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < DEADLINE,
                "never showed {needle:?}: {:?}",
                self.text()
            );
            thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Everything shown, once the run is over.
    fn finish(self) -> String {
        self.ended
            .recv_timeout(DEADLINE)
            .expect("the terminal run did not end");
        let _ = &self.child;
        self.text()
    }
}

#[test]
fn the_progress_bar_is_not_buried_under_a_line_per_reply_and_is_cleared_on_ctrl_c() {
    let (_server, port) = start_server(&[]);
    let exe = env!("CARGO_BIN_EXE_pirate");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let pidfile = dir.join(format!("pipelines-bar-{}.pid", std::process::id()));
    let run = format!(
        "{exe} client --count 30 --connect {} >/dev/null",
        endpoint(port)
    );
    let shown = Terminal::run(&run, &pidfile).finish();
    assert!(
        shown.contains("/30 replies"),
        "the bar was drawn: {shown:?}"
    );
    assert!(
        !shown.contains("server replied OK"),
        "no I: line per reply under the bar: {shown:?}"
    );
    assert!(shown.contains("summary: completed"), "{shown:?}");
    let _ = std::fs::remove_file(&pidfile);

    // Nobody answers: the bar stays at 0 until Ctrl-C, which must clear it.
    let silent = endpoint(free_port());
    let run = format!("{exe} client --count 30 --timeout 20s --connect {silent} >/dev/null");
    let terminal = Terminal::run(&run, &pidfile);
    terminal.wait_for("0/30 replies");
    let pid = common::read_pid(&pidfile);
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let shown = terminal.finish();
    let _ = std::fs::remove_file(&pidfile);
    let drawn = shown.rfind("0/30 replies").expect("the bar was drawn");
    let after = &shown[drawn..];
    let cleared = after.find("\x1b[2K").expect("the bar's line was cleared");
    let summary = after
        .find("summary: interrupted")
        .expect("a partial summary");
    assert!(cleared < summary, "cleared before the summary: {shown:?}");
}

#[test]
fn completions_for_one_shell_go_to_stdout_with_out_dash_and_no_directory_is_made() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = pirate(&["generate", "completions", "--shell", "bash", "--out", "-"]);
    cmd.current_dir(&dir);
    let (code, out, err) = run_bytes(cmd, b"");
    assert_eq!(code, 0, "{err}");
    let script = String::from_utf8(out).unwrap();
    assert!(script.contains("_pirate()"), "bash completions: {script}");
    assert!(!dir.join("-").exists(), "no directory named -");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_mistakes_are_one_line_usage_errors() {
    for args in [
        &["generate", "man", "--out", "-"][..],
        &["generate", "completions", "--out", "-"],
        &["generate", "man", "--shell", "zsh"],
        &["generate", "keys", "--shell", "zsh"],
    ] {
        let (code, out, err) = run(args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
    }
}

#[test]
fn generate_under_json_lists_what_it_wrote() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gen-json-{}", std::process::id()));
    let (code, out, err) = run(
        &[
            "generate",
            "completions",
            "--json",
            "--out",
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["event"], "generated");
    let written: Vec<&str> = lines[0]["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(written.len(), 3, "{written:?}");
    for path in written {
        assert!(Path::new(path).is_file(), "{path}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_titanic_dir_that_cannot_be_made_is_a_usage_error() {
    let (code, _, err) = run(
        &[
            "titanic",
            "--dir",
            "/proc/no-such-dir/store",
            "--connect",
            &endpoint(free_port()),
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--dir"), "{err}");
}

#[test]
fn a_bad_or_busy_endpoint_is_one_error_line_and_exit_2() {
    let (_server, port) = start_server(&[]);
    let busy = endpoint(port);
    for args in [
        &["server", "--bind", busy.as_str()][..],
        &["broker", "--bind", busy.as_str()],
        &["server", "--bind", "tcp://127.0.0.1:99999"],
        &["client", "--connect", "tcp://*:5555", "x"],
        &["worker", "--connect", "bogus://host:1"],
        &["queue", "--frontend", "tcp://10.254.254.254:5000"],
    ] {
        let (code, _, err) = run(args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
}

#[test]
fn interval_paces_the_requests_and_a_zero_interval_is_a_usage_error() {
    let (_server, port) = start_server(&["--json"]);
    let at = endpoint(port);
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &at,
            "--json",
            "--count",
            "3",
            "--interval",
            "150ms",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    // Each request after the first was sent about an interval after the one before it: the
    // lines' own timestamps say so. Pacing is at the source (a request is read an interval
    // after the one before), so a send may lag its read by a few milliseconds: the first, on
    // a work thread that had to be started, more than later ones, on the same thread reused
    // (measured 2-3 ms on a quiet machine, 11 ms with the other tests running). Unpaced, the
    // gaps would be about a millisecond.
    let lines = json_lines(&out);
    let ts = |event: &str| -> Vec<std::time::SystemTime> {
        lines
            .iter()
            .filter(|l| l["event"] == event)
            .map(|l| humantime::parse_rfc3339(l["ts"].as_str().unwrap()).unwrap())
            .collect()
    };
    let (sent, replied) = (ts("sent"), ts("reply"));
    assert_eq!((sent.len(), replied.len()), (3, 3), "{out}");
    for i in 1..3 {
        let gap = sent[i].duration_since(sent[i - 1]).unwrap_or_default();
        assert!(
            gap >= std::time::Duration::from_millis(120),
            "request {i}: {gap:?}"
        );
    }
    let (code, _, err) = run(&["client", "--connect", &at, "--interval", "0s", "x"], None);
    assert_eq!(code, 2, "{err}");
}

/// Ctrl-C during a paced run ends the request feed, so the client has answered every request
/// it sent when it stops; the run was still interrupted, not completed: exit 130 and a
/// summary that says so (it once said `completed` and exited 0, one run in two).
#[test]
fn a_paced_run_stopped_by_ctrl_c_is_interrupted_not_completed() {
    let (_server, port) = start_server(&[]);
    let at = endpoint(port);
    for _ in 0..3 {
        let mut client = spawn(
            "client",
            &[
                "client",
                "--connect",
                &at,
                "--json",
                "--count",
                "100",
                "--interval",
                "50ms",
            ],
        );
        client.wait_stdout(r#""event":"reply""#);
        client.signal(libc::SIGINT);
        assert_eq!(client.code(), 130, "{}", client.stderr.text());
        let summary = summary(&client.stdout.text());
        assert_eq!(summary["outcome"], "interrupted", "{summary}");
    }
}
