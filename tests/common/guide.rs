//! The ZeroMQ Guide's own chapter 4 programs as test peers: finds them, builds the C++ ones
//! once, and starts them with the `ZG_*` knobs their harness reads (see
//! `../shared/guide/README.md` and `FIXES.md`).
//!
//! A machine without them (no `../shared/guide`, no pyzmq, no g++ with cppzmq) skips the test
//! with a visible `SKIPPED:` line, unless `PIRATE_REQUIRE_GUIDE` is set, as `.ci/run` does after
//! installing them: then a missing piece fails the test.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{spawn_command, Proc};

/// Where the Guide's programs are: `$PIRATE_GUIDE_DIR`, else `../shared/guide` beside the
/// repository (present on every development machine and in CI).
pub fn guide_dir() -> PathBuf {
    std::env::var_os("PIRATE_GUIDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/guide"))
}

/// Says why a test cannot run here; fails instead when `PIRATE_REQUIRE_GUIDE` is set.
fn skip(why: &str) {
    assert!(
        std::env::var_os("PIRATE_REQUIRE_GUIDE").is_none(),
        "PIRATE_REQUIRE_GUIDE is set but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

/// The Python programs can run: the folder is there and python3 imports pyzmq.
pub fn python_ready() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if !guide_dir().join("py").is_dir() {
            return Err(format!("{} has no py/ folder", guide_dir().display()));
        }
        let ok = Command::new("python3")
            .args(["-c", "import zmq"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
            .ok_or_else(|| "python3 cannot import pyzmq (pip install pyzmq)".to_string())
    });
    match ready {
        Ok(()) => true,
        Err(why) => {
            skip(&format!("the Guide's Python programs cannot run: {why}"));
            false
        }
    }
}

/// The folder the C++ programs are built into: `$PIRATE_GUIDE_BIN`, else `target/guide-bin`.
fn cpp_dir() -> PathBuf {
    std::env::var_os("PIRATE_GUIDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/guide-bin"))
}

/// Builds the C++ programs once (`build-cpp.sh` skips what is up to date). Test binaries run
/// at once, so the build holds an exclusive lock on a file beside the programs.
fn cpp_ready() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let script = guide_dir().join("build-cpp.sh");
        if !script.is_file() {
            return Err(format!("{} is missing", script.display()));
        }
        let out = cpp_dir();
        fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let lock = File::create(out.join(".build.lock")).map_err(|e| e.to_string())?;
        // SAFETY: flock(2) on a descriptor we own; released when `lock` closes.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        let built = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .map_err(|e| format!("cannot run build-cpp.sh: {e}"))?;
        if !built.status.success() {
            return Err(format!(
                "build-cpp.sh failed (needs g++ libzmq3-dev cppzmq-dev): {}",
                String::from_utf8_lossy(&built.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(why) => {
            skip(&format!("the Guide's C++ programs cannot be built: {why}"));
            false
        }
    }
}

/// `python3 py/NAME.py ARGS` with the `ZG_*` variables in `env`, or `None` (skipped).
pub fn python(name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Proc> {
    if !python_ready() {
        return None;
    }
    let mut command = Command::new("python3");
    command
        .arg(guide_dir().join("py").join(format!("{name}.py")))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    command.envs(env.iter().copied());
    Some(spawn_command(&format!("{name}.py"), command, false))
}

/// The built C++ program `NAME ARGS` with the `ZG_*` variables in `env`, or `None` (skipped).
pub fn cpp(name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Proc> {
    if !cpp_ready() {
        return None;
    }
    let mut command = Command::new(cpp_dir().join(name));
    command.args(args);
    command.envs(env.iter().copied());
    Some(spawn_command(&format!("{name} (C++)"), command, false))
}

/// One of the Guide's programs in one of its languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Python,
    Cpp,
}

/// Starts the Guide's program `name` in `lang` (see [`python`] and [`cpp`]).
pub fn start(lang: Lang, name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Proc> {
    match lang {
        Lang::Python => python(name, args, env),
        Lang::Cpp => cpp(name, args, env),
    }
}

/// Every message the Guide's programs dumped with `-v`, as the text of its frames, in order.
/// `zhelpers.py`'s `dump` prints a rule of dashes, then `[NNN] text` per frame (on stdout);
/// `zmsg.hpp`'s `dump` prints the same without the space (on stderr). Lines between messages
/// (log lines) are not frames and end nothing; a frame line is `[`, three digits, `]`.
pub fn dumped_messages(text: &str) -> Vec<Vec<String>> {
    let mut messages: Vec<Vec<String>> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if line.starts_with("-----") {
            messages.push(Vec::new());
            open = true;
            continue;
        }
        let b = line.as_bytes();
        let is_frame =
            b.len() >= 5 && b[0] == b'[' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b']';
        match (is_frame, open) {
            (true, true) => {
                let rest = &line[5..];
                let frame = rest.strip_prefix(' ').unwrap_or(rest);
                messages.last_mut().unwrap().push(frame.to_string());
            }
            _ => open = false,
        }
    }
    messages
}

/// A fresh, empty directory under the system's temporary one for test `name` (e.g. a Titanic
/// store), removed first if a killed run left it behind.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pirate-guide-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("cannot create a scratch directory");
    dir
}

/// How many lines of `proc`'s stdout and stderr contain `needle`.
pub fn lines_with(proc: &Proc, needle: &str) -> usize {
    let (out, err) = (proc.stdout.text(), proc.stderr.text());
    out.lines()
        .chain(err.lines())
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (one of the Guide's
/// programs has bound it), failing the test after `DEADLINE`. Some C++ programs print with
/// `printf` (`s_console`) into a pipe, flushed only at exit: their "ready" lines cannot be
/// waited for.
pub fn wait_bound(port: u16) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < super::DEADLINE,
            "nothing listens on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The Guide's mdbroker in `lang` bound on 127.0.0.1:`port`, waited for until it accepts
/// connections, or `None` (skipped).
pub fn mdbroker(lang: Lang, port: u16) -> Option<Proc> {
    let bind = super::endpoint(port);
    let broker = start(lang, "mdbroker", &[], &[("ZG_BIND", &bind)])?;
    wait_bound(port);
    Some(broker)
}

/// The Guide's mdworker (echo) in `lang`, connected to a broker on `port`, or `None`
/// (skipped). It heartbeats every 2500 ms and gives the broker up after 3 silent intervals
/// (fixed in `mdwrkapi`), so a broker beside it must keep that timing.
pub fn mdworker(lang: Lang, port: u16) -> Option<Proc> {
    let connect = super::endpoint(port);
    start(lang, "mdworker", &[], &[("ZG_CONNECT", &connect)])
}
