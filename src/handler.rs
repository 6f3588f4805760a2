//! What a server or worker does with a request body: echo it, or run a shell command on it.
//!
//! # How `--exec` runs a command
//!
//! - `sh -c CMD`, in a process group of its own, with the body on stdin. A multi-frame body is
//!   written frame after frame with one newline byte (`0x0A`) between frames, and a final
//!   newline if the last frame does not end with one (so line tools like `sed` see whole
//!   lines). Bytes pass through unchanged both ways: nothing is decoded as UTF-8.
//! - stdin is written, and stdout and stderr are read, at the same time (one thread each), so a
//!   command that writes while it reads (`cat` with a 200 KB body) cannot deadlock against us.
//! - The reply is one frame: stdout without its last newline. In 0.2 streaming
//!   ([`stream_command`]) every line of stdout but the last is a PARTIAL as soon as it is
//!   written, and the last line is the FINAL.
//! - A command that fails (cannot start, exits non-zero, killed) produces a one-line reply
//!   `error: …` with the first line of its stderr, and the caller keeps serving. The same
//!   line (at most [`FAILURE_LINE_MAX`] bytes) is noted for the role, which logs it as a `W:`
//!   line and counts it (`exec_failed`) when the reply comes back to its loop
//!   ([`report_failures`]); at most [`FAILURES_KEPT`] wait at once, the rest are only counted.
//! - Bounds: stdout is cut off at the process-wide maximum message size
//!   ([`transport::max_message`], `--max-message`), since a bigger reply would be refused by
//!   the peer anyway; the command is then killed and the reply is an `error:` line. Only the
//!   first [`STDERR_KEPT`] bytes of stderr are kept (the rest is read and dropped).
//! - `--exec-timeout`: a command still running after it is killed, with its whole process
//!   group (`SIGKILL`), and the reply is an `error: … timed out` line.
//! - Stopping: when `pirate` is asked to stop (Ctrl-C, SIGTERM) its loop ends and the binary
//!   kills every running command's group ([`kill_running`]) before it exits; a second Ctrl-C
//!   kills them at once. The shell also gets `PR_SET_PDEATHSIG` = `SIGKILL`, so a `pirate`
//!   killed with `kill -9` takes its shell with it (only the shell: a grandchild that outlives
//!   it is reparented, which is what process groups and the paths above are for).

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::msg::Message;
use crate::transport;

/// The request handler of a server or worker.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Handler {
    /// Reply with the request, frame for frame.
    #[default]
    Echo,
    /// Run a shell command with the request body on stdin and reply with its stdout.
    Exec(Exec),
    /// A library user's function ([`crate::majordomo::serve`]).
    Func(Func),
}

/// A request handler written in Rust: body in, reply out.
#[derive(Clone)]
pub struct Func(Arc<dyn Fn(Message) -> Message + Send + Sync>);

impl fmt::Debug for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Func")
    }
}

/// Two handlers are the same function only if they are the same closure.
impl PartialEq for Func {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Func {}

/// A command to run per request (`--exec CMD`, `--exec-timeout D`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// Run as `sh -c CMD`.
    pub cmd: String,
    /// Kill the command (its whole process group) after this long. `None`: never.
    pub timeout: Option<Duration>,
}

impl Exec {
    /// `cmd` with no timeout.
    pub fn new(cmd: impl Into<String>) -> Self {
        Exec {
            cmd: cmd.into(),
            timeout: None,
        }
    }
}

impl Handler {
    /// A handler that calls `f` for every request.
    pub fn func(f: impl Fn(Message) -> Message + Send + Sync + 'static) -> Self {
        Handler::Func(Func(Arc::new(f)))
    }

    /// Handles one request body. Never fails: a command that cannot run or exits non-zero
    /// produces a reply that says so, and the caller keeps serving.
    pub fn handle(&self, body: Message) -> Message {
        match self {
            Handler::Echo => body,
            Handler::Exec(exec) => Message::from_frames(vec![run_command(exec, body)]),
            Handler::Func(Func(f)) => f(body),
        }
    }
}

/// Longest failure line noted for the log (the command and its stderr's first line can be
/// long); the reply itself is not cut.
pub const FAILURE_LINE_MAX: usize = 300;
/// Most failure lines waiting for the role to log them.
pub const FAILURES_KEPT: usize = 64;

/// Failures noted by work threads, not yet logged: (lines, failures whose line was not kept).
static FAILURES: Mutex<(Vec<String>, u64)> = Mutex::new((Vec::new(), 0));

/// Notes a failed command's reply line `line` (`error: …`) for [`report_failures`].
fn note_failure(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let text = match text.char_indices().nth(FAILURE_LINE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    if let Ok(mut failures) = FAILURES.lock() {
        if failures.0.len() < FAILURES_KEPT {
            failures.0.push(text);
        } else {
            failures.1 += 1;
        }
    }
}

/// Logs (`W: --exec failed: …`) and counts in `report` the commands that failed since the
/// last call. Called by each role that runs `--exec` when a reply comes back to its loop.
pub fn report_failures(
    report: &mut crate::event::ServiceReport,
    events: &mut crate::event::Events,
) {
    let (lines, unkept) = match FAILURES.lock() {
        Ok(mut failures) => (
            std::mem::take(&mut failures.0),
            std::mem::take(&mut failures.1),
        ),
        Err(_) => return,
    };
    report.exec_failed += lines.len() as u64 + unkept;
    for line in lines {
        events.warn(format!("--exec failed: {line}"));
    }
    if unkept > 0 {
        events.warn(format!("--exec failed {unkept} more times (not shown)"));
    }
}

/// Bytes of a command's stderr kept for its `error:` line.
pub const STDERR_KEPT: usize = 4096;

/// Runs the command on `input` (see the module docs) and returns stdout without its last
/// newline; on failure, an `error:` line.
pub fn run_command(exec: &Exec, input: Message) -> Vec<u8> {
    let mut out = Vec::new();
    match run(exec, input, |chunk| {
        out.extend_from_slice(chunk);
        out.len()
    }) {
        Ok(()) => {
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            out
        }
        Err(line) => {
            note_failure(&line);
            line
        }
    }
}

/// Runs the command like [`run_command`], but hands each line of stdout but the last to
/// `partial` as soon as it is written, and returns the last line (or, on failure, the
/// `error:` line). Used for 0.2 streamed replies.
pub fn stream_command(exec: &Exec, input: Message, mut partial: impl FnMut(Vec<u8>)) -> Vec<u8> {
    // `line` is the line being read; `last` the last complete one, held back because it may
    // turn out to be the FINAL.
    let mut line: Vec<u8> = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    let result = run(exec, input, |chunk| {
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(end) => {
                    line.extend_from_slice(end);
                    if let Some(previous) = last.replace(std::mem::take(&mut line)) {
                        partial(previous);
                    }
                }
                None => line.extend_from_slice(piece),
            }
        }
        // Only the line being held is buffered: that is what the bound applies to.
        line.len() + last.as_ref().map_or(0, Vec::len)
    });
    match result {
        Ok(()) if !line.is_empty() => {
            // Output that does not end with a newline: its tail is the last line.
            if let Some(previous) = last {
                partial(previous);
            }
            line
        }
        Ok(()) => last.unwrap_or_default(),
        Err(failure) => {
            note_failure(&failure);
            failure
        }
    }
}

/// Process groups of the commands running now, for [`kill_running`].
static RUNNING: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Kills every command running now, with its process group. For the second Ctrl-C, which
/// exits at once without waiting for the loops to stop their commands.
pub fn kill_running() {
    if let Ok(running) = RUNNING.lock() {
        for &group in running.iter().flatten() {
            kill_group(group);
        }
    }
}

fn kill_group(group: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// A running command's process group, registered while it runs. Dropped, it kills the group;
/// [`Group::release`] lets it go without. Either happens before the shell is reaped: until then
/// its pid, hence the group id, cannot be reused, so the kill never hits someone else's group.
struct Group(i32);

impl Group {
    fn register(pid: u32) -> Self {
        let group = pid as i32;
        if let Ok(mut running) = RUNNING.lock() {
            running.get_or_insert_with(HashSet::new).insert(group);
        }
        Group(group)
    }

    fn unregister(&self) {
        if let Ok(mut running) = RUNNING.lock() {
            if let Some(set) = running.as_mut() {
                set.remove(&self.0);
            }
        }
    }

    /// The command ended on its own: a process it left in the background is its business.
    fn release(self) {
        self.unregister();
        std::mem::forget(self);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.unregister();
        kill_group(self.0);
    }
}

/// True once `pid` (our child) has exited, without reaping it (`WNOWAIT`), so that its process
/// group id stays reserved until we let go of it.
fn has_exited(pid: u32) -> bool {
    // SAFETY: waitid writes only into `info`, which is ours and zeroed.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

/// Why a command did not give a reply.
enum Stopped {
    TimedOut(Duration),
    TooBig(u64),
}

/// Runs `sh -c CMD` with `input` on stdin, passing stdout to `output` chunk by chunk as it
/// comes (`output` returns how many bytes it now holds, to enforce the bound). `Err` is the
/// `error:` reply.
fn run(exec: &Exec, input: Message, mut output: impl FnMut(&[u8]) -> usize) -> Result<(), Vec<u8>> {
    let cmd = &exec.cmd;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("error: cannot run `{cmd}`: {e}").into_bytes())?;
    let group = Group::register(child.id());
    let started = Instant::now();
    let deadline = exec.timeout.map(|t| started + t);

    if let Some(mut stdin) = child.stdin.take() {
        thread::spawn(move || {
            // A command that does not read its input closes the pipe early (EPIPE: Rust
            // ignores SIGPIPE); that is not an error.
            let frames = input.into_frames();
            let ends_with_newline = frames.last().is_some_and(|f| f.last() == Some(&b'\n'));
            for (i, frame) in frames.iter().enumerate() {
                if (i > 0 && stdin.write_all(b"\n").is_err()) || stdin.write_all(frame).is_err() {
                    return;
                }
            }
            if !ends_with_newline {
                let _ = stdin.write_all(b"\n");
            }
        });
    }
    let stderr = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        })
    });
    let (chunks, stdout) = mpsc::channel::<Vec<u8>>();
    if let Some(mut pipe) = child.stdout.take() {
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if chunks.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
    }

    let limit = transport::max_message();
    let ended = loop {
        let now = Instant::now();
        if let Some(deadline) = deadline.filter(|d| now >= *d) {
            break Err(Stopped::TimedOut(deadline - started));
        }
        let chunk = match deadline {
            Some(deadline) => stdout.recv_timeout(deadline - now),
            None => stdout
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match chunk {
            Ok(chunk) => {
                if output(&chunk) as u64 > limit {
                    break Err(Stopped::TooBig(limit));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdout closed: the command is done, or about to be.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break wait_exit(child.id(), deadline, started);
            }
        }
    };
    let why = match ended {
        Ok(()) => {
            group.release();
            let status = child.wait();
            let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
            return match status {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(failure_line(cmd, s, &stderr)),
                Err(e) => Err(format!("error: `{cmd}` failed: {e}").into_bytes()),
            };
        }
        Err(why) => why,
    };
    drop(group); // kills the group, before the shell is reaped
    let _ = child.wait();
    Err(match why {
        Stopped::TimedOut(after) => format!(
            "error: `{cmd}` timed out after {} (--exec-timeout) and was killed",
            humantime::format_duration(after)
        ),
        Stopped::TooBig(limit) => {
            format!("error: `{cmd}` wrote more than {limit} bytes (--max-message) and was killed")
        }
    }
    .into_bytes())
}

/// After stdout closed: waits for the shell to exit (without reaping it), still honouring the
/// deadline (a command may close stdout and keep running).
fn wait_exit(pid: u32, deadline: Option<Instant>, started: Instant) -> Result<(), Stopped> {
    let mut pause = Duration::from_micros(50);
    loop {
        if has_exited(pid) {
            return Ok(());
        }
        if let Some(deadline) = deadline.filter(|d| Instant::now() >= *d) {
            return Err(Stopped::TimedOut(deadline - started));
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The one-line reply for a command that failed.
fn failure_line(cmd: &str, status: ExitStatus, stderr: &[u8]) -> Vec<u8> {
    let stderr = String::from_utf8_lossy(stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let status = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_string(),
    };
    if first.is_empty() {
        format!("error: `{cmd}` {status}").into_bytes()
    } else {
        format!("error: `{cmd}` {status}: {first}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &[u8]) -> Message {
        Message::from_frames(vec![body.to_vec()])
    }

    fn text(reply: Vec<u8>) -> String {
        String::from_utf8(reply).unwrap()
    }

    #[test]
    fn streaming_hands_out_every_line_but_the_last() {
        let mut parts = Vec::new();
        let last = stream_command(&Exec::new("printf 'a\\nb\\nc\\n'"), Message::new(), |l| {
            parts.push(l)
        });
        assert_eq!(parts, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(last, b"c".to_vec());
        let mut parts = Vec::new();
        let last = stream_command(&Exec::new("printf 'a\\nb'"), Message::new(), |l| {
            parts.push(l)
        });
        assert_eq!((parts, last), (vec![b"a".to_vec()], b"b".to_vec()));
        let failed = stream_command(&Exec::new("echo x; exit 2"), Message::new(), |_| {});
        assert_eq!(text(failed), "error: `echo x; exit 2` exited with status 2");
    }

    #[test]
    fn echo_returns_every_frame() {
        let m = Message::from_frames(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(Handler::Echo.handle(m.clone()), m);
    }

    #[test]
    fn exec_feeds_stdin_and_returns_stdout() {
        let reply = Handler::Exec(Exec::new("tr a-z A-Z")).handle(one(b"hello"));
        assert_eq!(reply.into_frames(), vec![b"HELLO".to_vec()]);
    }

    #[test]
    fn frames_reach_the_command_one_per_line() {
        let body = Message::from_frames(vec![b"a".to_vec(), b"b\n".to_vec()]);
        assert_eq!(
            run_command(&Exec::new("od -An -c | tr -s ' '"), body),
            b" a \\n b \\n"
        );
    }

    #[test]
    fn bodies_are_bytes_not_text() {
        let bytes = vec![0xff, 0xfe, 0x00, 0x80, b'x'];
        assert_eq!(run_command(&Exec::new("cat"), one(&bytes)), bytes);
    }

    #[test]
    fn a_big_body_through_cat_does_not_deadlock() {
        let body: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        assert_eq!(run_command(&Exec::new("cat"), one(&body)), body);
    }

    #[test]
    fn a_failing_command_replies_with_an_error_line() {
        let reply = run_command(&Exec::new("echo oops >&2; exit 3"), one(b"x"));
        assert_eq!(
            text(reply),
            "error: `echo oops >&2; exit 3` exited with status 3: oops"
        );
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_group() {
        let dir = std::env::temp_dir().join(format!("pirate-exec-{}", rand::random::<u64>()));
        let pidfile = dir.with_extension("pid");
        let exec = Exec {
            cmd: format!("sleep 1000 & echo $! > {}; wait", pidfile.display()),
            timeout: Some(Duration::from_millis(200)),
        };
        let reply = text(run_command(&exec, one(b"x")));
        assert!(reply.starts_with("error: `sleep 1000"), "{reply}");
        assert!(reply.contains("timed out after 200ms"), "{reply}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&pidfile);
        assert!(
            gone(pid),
            "the backgrounded sleep {pid} outlived its command"
        );
    }

    #[test]
    fn output_over_the_maximum_message_is_refused() {
        let exec = Exec::new(format!(
            "head -c {} /dev/zero",
            transport::max_message() + 1
        ));
        let reply = text(run_command(&exec, Message::new()));
        assert!(reply.contains("--max-message"), "{reply}");
    }

    /// True once `pid` is dead (or a zombie waiting for init to reap it), within 5 s.
    pub(crate) fn gone(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z')) =>
                {
                    return true
                }
                Ok(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }
}
