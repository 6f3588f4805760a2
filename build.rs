//! Records the commit pirate is built from (`PIRATE_COMMIT`), for the runs that say which
//! build made them (`pirate chaos`'s results.json and report). `unknown` without git.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PIRATE_COMMIT={commit}");
    // Built again when HEAD moves (a checkout) or the branch it names does (a commit). Edits
    // not yet committed do not show: the commit is the last one.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let (Some(common), Some(head)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        println!("cargo:rerun-if-changed={common}/{head}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
