//! What a server or worker does with a request body: echo it, or run a shell command on it.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::msg::Message;

/// The request handler of a server or worker.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Handler {
    /// Reply with the request, frame for frame.
    #[default]
    Echo,
    /// Run `sh -c CMD` with the request body on stdin and reply with its stdout.
    Exec(String),
}

impl Handler {
    /// Handles one request body. Never fails: a command that cannot run or exits non-zero
    /// produces a reply that says so, and the caller keeps serving.
    pub fn handle(&self, body: Message) -> Message {
        match self {
            Handler::Echo => body,
            Handler::Exec(cmd) => Message::from_frames(vec![run_command(cmd, &body.text())]),
        }
    }
}

/// Runs `sh -c cmd`, feeding `input` plus a newline (so line tools like `sed` see a whole line)
/// and returning stdout without its last newline; on failure, an `error:` line.
pub fn run_command(cmd: &str, input: &str) -> Vec<u8> {
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("error: cannot run `{cmd}`: {e}").into_bytes(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input closes the pipe early; that is not an error.
        let _ = stdin.write_all(input.as_bytes());
        if !input.ends_with('\n') {
            let _ = stdin.write_all(b"\n");
        }
    }
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return format!("error: `{cmd}` failed: {e}").into_bytes(),
    };
    if output.status.success() {
        let mut out = output.stdout;
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        out
    } else {
        failure_line(cmd, &output)
    }
}

/// Runs `sh -c cmd` like [`run_command`], but hands each line of stdout but the last to
/// `partial` as soon as it is written, and returns the last line (or, on failure, the
/// `error:` line). Used for 0.2 streamed replies.
pub fn stream_command(cmd: &str, input: &str, mut partial: impl FnMut(Vec<u8>)) -> Vec<u8> {
    use std::io::{BufRead, BufReader};
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("error: cannot run `{cmd}`: {e}").into_bytes(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let input = format!("{}\n", input.strip_suffix('\n').unwrap_or(input));
        // Written from a thread so a command that writes before it reads cannot deadlock.
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let mut pending: Option<Vec<u8>> = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if let Some(previous) = pending.replace(line) {
                partial(previous);
            }
        }
    }
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return format!("error: `{cmd}` failed: {e}").into_bytes(),
    };
    if output.status.success() {
        pending.unwrap_or_default()
    } else {
        failure_line(cmd, &output)
    }
}

/// The one-line reply for a command that failed.
fn failure_line(cmd: &str, output: &std::process::Output) -> Vec<u8> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let status = match output.status.code() {
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
    #[test]
    fn streaming_hands_out_every_line_but_the_last() {
        let mut parts = Vec::new();
        let last = stream_command("printf 'a\\nb\\nc\\n'", "", |l| parts.push(l));
        assert_eq!(parts, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(last, b"c".to_vec());
        let failed = stream_command("echo x; exit 2", "", |_| {});
        assert_eq!(
            failed,
            b"error: `echo x; exit 2` exited with status 2".to_vec()
        );
    }

    use super::*;

    #[test]
    fn echo_returns_every_frame() {
        let m = Message::from_frames(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(Handler::Echo.handle(m.clone()), m);
    }

    #[test]
    fn exec_feeds_stdin_and_returns_stdout() {
        let reply = Handler::Exec("tr a-z A-Z".into())
            .handle(Message::from_frames(vec![b"hello".to_vec()]));
        assert_eq!(reply.into_frames(), vec![b"HELLO".to_vec()]);
    }

    #[test]
    fn a_failing_command_replies_with_an_error_line() {
        let reply = run_command("echo oops >&2; exit 3", "x");
        let text = String::from_utf8(reply).unwrap();
        assert_eq!(
            text,
            "error: `echo oops >&2; exit 3` exited with status 3: oops"
        );
    }
}
