//! The committed man pages and completions must be exactly what the code generates now.

mod common;

use std::fs;
use std::path::Path;

fn assert_current(what: &str, committed: &str) {
    let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("generated-{what}"));
    let _ = fs::remove_dir_all(&fresh);
    let (code, _, err) = common::run(&["generate", what, "--out", fresh.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join(committed);
    let mut names: Vec<String> = fs::read_dir(&fresh)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let want = fs::read(fresh.join(name)).unwrap();
        let have = fs::read(committed.join(name)).unwrap_or_default();
        assert!(
            want == have,
            "{}/{name} is stale: run `cargo run -- generate {what}` and commit the result",
            committed.display()
        );
    }
    let mut on_disk: Vec<String> = fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        names,
        "{} holds files the code no longer generates",
        committed.display()
    );
}

#[test]
fn man_pages_are_current() {
    assert_current("man", "man");
}

#[test]
fn completions_are_current() {
    assert_current("completions", "completions");
}
