//! The watchdog: a shell that outlives a runner killed with SIGKILL and removes what the run
//! left (process groups, network namespaces, temporary directories).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use pirate::error::{Error, Result};

/// Kills what is left of a run whose runner died without cleaning up (`kill -9`).
///
/// A shell reading lines on its stdin: `+PGID` when the runner starts a process group,
/// `-PGID` once it has killed and reaped one. At end of file — the runner closing the pipe,
/// or the kernel closing it because the runner died — it SIGKILLs every group still listed
/// and removes the run's temporary directories. It leads a process group of its own and
/// ignores the terminal's signals, so it outlives the runner long enough to do that. (The
/// children's parent-death signal covers them too, but not their own children, such as the
/// program a `--worker-cmd` shell runs.)
pub(super) struct Watchdog {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
}

pub(super) const WATCHDOG: &str = r#"trap '' INT TERM HUP QUIT
PATH=$PATH:/usr/sbin:/sbin
live=
netns=
while IFS= read -r line; do
  case $line in
    +*) live="$live ${line#+}" ;;
    -*) keep=; for g in $live; do [ "$g" = "${line#-}" ] || keep="$keep $g"; done; live=$keep ;;
    =*) netns="$netns ${line#=}" ;;
    /*) netns= ;;
  esac
done
for g in $live; do kill -s KILL -- "-$g" 2>/dev/null; done
for n in $netns; do ip netns del "$n" 2>/dev/null; done
if [ $# -gt 0 ]; then sleep 0.2; rm -rf -- "$@"; fi
"#;

impl Watchdog {
    /// Starts the watchdog, which removes `dirs` when the run is over, however it ends.
    pub(super) fn start(dirs: &[PathBuf]) -> Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("pirate-chaos-watchdog")
            .args(dirs)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start the chaos watchdog (sh): {e}")))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    pub(super) fn tell(&mut self, line: String) {
        if let Some(stdin) = &mut self.stdin {
            // A watchdog that died cannot be helped: the run goes on without it.
            let _ = writeln!(stdin, "{line}");
        }
    }

    pub(super) fn watch(&mut self, pgid: i32) {
        self.tell(format!("+{pgid}"));
    }

    pub(super) fn forget(&mut self, pgid: i32) {
        self.tell(format!("-{pgid}"));
    }

    /// A network namespace to delete at the end (`--net namespaces`), told before it exists.
    pub(super) fn namespace(&mut self, name: &str) {
        self.tell(format!("={name}"));
    }

    /// The runner removed the namespaces itself: nothing left to delete.
    pub(super) fn namespaces_removed(&mut self) {
        self.tell("/".into());
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stdin = None; // end of file: it cleans up and exits
        let _ = self.child.wait();
    }
}
