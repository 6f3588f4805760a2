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

/// Every committed man page has the sections a reader looks for: the global options, the
/// exit status (not clap's "EXTRA"), examples that run that very command, and SEE ALSO.
#[test]
fn every_man_page_has_examples_see_also_global_options_and_exit_status() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let page = fs::read_to_string(&path).unwrap();
        pages += 1;
        let sections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .map(|h| h.trim_matches('"'))
            .collect();
        for wanted in ["GLOBAL OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
            assert!(
                sections.contains(&wanted),
                "{name}: no {wanted} in {sections:?}"
            );
        }
        assert!(!sections.contains(&"EXTRA"), "{name}: {sections:?}");
        let section = |heading: &str| -> String {
            let start = page
                .find(&format!(".SH {heading}"))
                .or_else(|| page.find(&format!(".SH \"{heading}\"")))
                .unwrap();
            let rest = &page[start + 4..];
            rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
        };
        let global = section("\"GLOBAL OPTIONS\"");
        for flag in [r"\-\-verbose", r"\-\-quiet", r"\-\-json"] {
            assert!(global.contains(flag), "{name}: no {flag} in {global}");
        }
        let exit = section("\"EXIT STATUS\"");
        for code in ["0 ", "2 ", "130 "] {
            assert!(exit.contains(&format!("\n  {code}")), "{name}: {exit}");
        }
        // Examples run this page's command: `pirate chaos run` on pirate-chaos-run.
        let command = name.replace('-', " ");
        let examples = section("EXAMPLES");
        assert!(
            name == "pirate" || examples.contains(&command),
            "{name}: no example runs `{command}`: {examples}"
        );
        assert!(
            examples.matches("pirate ").count() >= 1,
            "{name}: {examples}"
        );
        assert!(section("\"SEE ALSO\"").contains("(1)"), "{name}");
    }
    assert!(pages >= 10, "only {pages} pages");
}

#[test]
fn the_committed_json_schema_is_the_one_the_code_prints() {
    let (code, printed, err) = common::run(&["generate", "schema"], None);
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events.schema.json"),
    )
    .expect("docs/events.schema.json");
    assert!(
        printed == committed,
        "docs/events.schema.json is stale: run `cargo run -- generate schema > docs/events.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(schema["title"], "pirate --json line");
}

/// What bash offers for `words` (the last one being completed) with the committed script.
fn bash_offers(words: &[&str], cwd: &std::path::Path) -> Vec<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/pirate.bash");
    let line = words.join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; _pirate pirate \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len() - 1
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &program])
        .current_dir(cwd)
        .output()
        .expect("bash runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_endpoints_with_no_file_and_chaos_report_with_directories() {
    let dir = std::env::temp_dir().join(format!("pirate-complete-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("run1")).unwrap();
    std::fs::write(dir.join("notes.txt"), "").unwrap();
    let connect = bash_offers(&["pirate", "client", "--connect", "''"], &dir);
    assert!(
        !connect.iter().any(|c| c == "notes.txt" || c == "run1"),
        "--connect offered files: {connect:?}"
    );
    let report = bash_offers(&["pirate", "chaos", "report", "''"], &dir);
    assert!(report.iter().any(|c| c == "run1"), "{report:?}");
    assert!(!report.iter().any(|c| c == "notes.txt"), "{report:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn man_pages_name_each_flags_value_in_the_synopsis_and_document_no_color() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let client = std::fs::read_to_string(dir.join("pirate-client.1")).unwrap();
    let synopsis = client
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|rest| rest.split(".SH").next())
        .expect("a SYNOPSIS section");
    for word in [
        "--connect <ENDPOINT>",
        "--timeout <DURATION>",
        "[REQUEST]...",
    ] {
        assert!(
            synopsis.replace("\\-", "-").contains(word),
            "{word} not in {synopsis}"
        );
    }
    for page in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(page.unwrap().path()).unwrap();
        assert!(
            text.contains(".SH ENVIRONMENT") && text.contains("NO_COLOR"),
            "a page without NO_COLOR"
        );
    }
}
