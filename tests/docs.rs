//! The documentation tells the truth: the README's quick start works as written, every link
//! between the pages leads somewhere, every default the prose quotes is the command's, and
//! every `sh` example is either run by a named test or marked as illustrative
//! (`sh tested-by=tests/FILE.rs::test_name` or `sh illustrative` after the opening fence).

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The `sh` blocks of a page: (the fence's info string, the lines inside).
fn sh_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) if info == "sh" || info.starts_with("sh ") => {
                open = Some((info.to_string(), Vec::new()))
            }
            (None, Some(_)) => open = Some(("other".into(), Vec::new())),
            (Some(_), Some("")) => {
                let (info, lines) = open.take().unwrap();
                if info != "other" {
                    blocks.push((info, lines));
                }
            }
            (Some((_, lines)), _) => lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    blocks
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation but `-` and `_` gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_sh_example_is_run_by_a_named_test_or_marked_illustrative() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (info, lines) in sh_blocks(&text) {
            let first = lines.first().cloned().unwrap_or_default();
            let tag = info.strip_prefix("sh").unwrap().trim();
            if tag == "illustrative" {
                continue;
            }
            let Some(test) = tag.strip_prefix("tested-by=") else {
                panic!(
                    "{}: the sh block starting `{first}` is neither `sh illustrative` nor \
                     `sh tested-by=tests/FILE.rs::test`",
                    page.display()
                );
            };
            let (file, name) = test.split_once("::").expect("tested-by=FILE::TEST");
            let source = std::fs::read_to_string(root().join(file))
                .unwrap_or_else(|e| panic!("{}: {file}: {e}", page.display()));
            assert!(
                source.contains(&format!("fn {name}(")),
                "{}: {file} has no test {name} (the block starting `{first}`)",
                page.display()
            );
        }
    }
}

#[test]
fn every_link_between_the_pages_leads_to_a_file_and_heading_that_exist() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            if target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            let (file, heading) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            assert!(
                file.exists(),
                "{}: link to {target}: no such file",
                page.display()
            );
            if !heading.is_empty() {
                let linked = std::fs::read_to_string(&file).unwrap();
                assert!(
                    anchors(&linked).iter().any(|a| a == heading),
                    "{}: link to {target}: no such heading",
                    page.display()
                );
            }
        }
    }
}

#[test]
fn the_readme_starts_with_the_main_job_and_the_tests_and_stays_short() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (_, first) = sh_blocks(&text).into_iter().next().expect("an sh block");
    assert!(first[0].contains("chaos"), "{first:?}");
    assert!(first[1].starts_with("cargo test"), "{first:?}");
    let lines = text.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: the rest belongs in docs/"
    );
}

fn refs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

/// The quick start's three commands, as the README has them, with its port swapped for a free
/// one (so the test runs beside anything): the client prints `hello`.
#[test]
fn the_readme_quick_start_works_as_written() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (_, block) = sh_blocks(&text)
        .into_iter()
        .find(|(info, _)| info.contains("the_readme_quick_start_works_as_written"))
        .expect("the quick start block");
    let port = free_port().to_string();
    let args = |line: &str| -> Vec<String> {
        let command = line.split(" #").next().unwrap();
        let words: Vec<String> = command
            .split_whitespace()
            .map(|w| w.replace("7555", &port))
            .collect();
        assert_eq!(words[0], "pirate", "{line}");
        words[1..].to_vec()
    };
    let [broker, worker, client] = [&block[0], &block[1], &block[2]].map(|l| args(l));
    let broker = spawn("broker", &refs(&broker));
    broker.wait_stderr("broker");
    let worker = spawn("worker", &refs(&worker));
    worker.wait_stderr("echo");
    let (code, out, err) = run(&refs(&client), None);
    assert_eq!((code, out.as_str()), (0, "hello\n"), "{err}");
}

/// The exit status table of docs/output.md and the README's line list exactly the codes of the
/// one table in code, `pirate::error::EXIT_STATUSES`, in its order.
#[test]
fn the_documented_exit_statuses_are_the_ones_in_the_code() {
    let codes: Vec<String> = pirate::error::EXIT_STATUSES
        .iter()
        .map(|(code, _)| code.to_string())
        .collect();
    let output = std::fs::read_to_string(root().join("docs/output.md")).unwrap();
    let section = &output[output
        .find("## Exit status")
        .expect("an Exit status section")..];
    let table: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_start_matches('|')
                .split('|')
                .next()
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(table, codes, "docs/output.md");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Exit status")
        .expect("an Exit status section")..];
    let paragraph = section.split("\n\n").nth(1).unwrap();
    let listed: Vec<String> = paragraph
        .split('·')
        .map(|item| item.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(listed, codes, "README.md");
}

/// The subcommands whose flags a page's prose speaks of (every one, for the other pages).
fn commands_of(page: &str) -> Vec<&'static str> {
    match page {
        "bench.md" => vec!["bench"],
        "binary-star.md" => vec!["server", "broker", "client"],
        "chaos.md" => vec!["chaos run", "chaos proxy"],
        "freelance.md" | "lazy-pirate.md" => vec!["client", "server"],
        "majordomo.md" => vec!["broker", "worker", "client"],
        "paranoid-pirate.md" => vec!["queue", "worker"],
        "titanic.md" => vec!["titanic"],
        _ => vec![
            "server",
            "client",
            "queue",
            "worker",
            "broker",
            "titanic",
            "chaos run",
            "chaos proxy",
            "bench",
        ],
    }
}

/// The values a `--help` says a flag defaults to: the numbers of its `[default: …]`
/// (`[default: 1s, or 2500ms for mdp/mdp2]` gives `1s` and `2500ms`), or None when the
/// command has no such flag.
fn help_defaults(help: &str, flag: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = help.lines().collect();
    let is_flag_line = |l: &str| {
        let t = l.trim_start();
        t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", "))
    };
    let start = lines.iter().position(|l| {
        is_flag_line(l)
            && l.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|w| w == flag)
    })?;
    let entry: String = lines[start..]
        .iter()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !is_flag_line(l))
        .map(|(_, l)| l.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(at) = entry.find("[default: ") else {
        return Some(Vec::new());
    };
    let default = &entry[at + "[default: ".len()..];
    let default = &default[..default.find(']').unwrap_or(default.len())];
    Some(
        default
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .filter(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect(),
    )
}

/// The value a page gives in "`--flag` (VALUE…)": its number, thousands separators dropped,
/// with its unit (`16 MiB` is `16MiB`, `1,000,000, a backstop` is `1000000`).
fn documented_value(after: &str) -> String {
    const UNITS: [&str; 11] = [
        "ms", "s", "m", "h", "B", "KiB", "MiB", "GiB", "kbit", "mbit", "gbit",
    ];
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
        .collect();
    let rest = &after[number.len()..];
    let number = number.trim_end_matches([',', '.']).replace(',', "");
    let unit: String = rest
        .strip_prefix(' ')
        .unwrap_or(rest)
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    if UNITS.contains(&unit.as_str()) {
        format!("{number}{unit}")
    } else {
        number
    }
}

/// A default written in prose, "`--heartbeat` (2500ms)", is the one the command's `--help`
/// shows, which clap takes from the library's config: a default changed in code and not in the
/// docs fails here.
#[test]
fn defaults_the_docs_quote_are_the_ones_the_commands_have() {
    let mut helps: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    let mut checked = 0;
    for page in pages() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&page).unwrap();
        for (at, _) in text.match_indices("` (") {
            let Some(tick) = text[..at].rfind('`') else {
                continue;
            };
            let flag = &text[tick + 1..at];
            let after = &text[at + 3..];
            if !flag.starts_with("--")
                || flag.contains(' ')
                || !after.starts_with(|c: char| c.is_ascii_digit())
            {
                continue;
            }
            let value = documented_value(after);
            let mut found = Vec::new();
            for command in commands_of(&name) {
                let help = helps.entry(command).or_insert_with(|| {
                    let mut args: Vec<&str> = command.split(' ').collect();
                    args.push("--help");
                    let (code, out, err) = run(&args, None);
                    assert_eq!(code, 0, "pirate {command} --help: {err}");
                    out
                });
                if let Some(defaults) = help_defaults(help, flag) {
                    found.push((command, defaults));
                }
            }
            assert!(
                !found.is_empty(),
                "{name}: {flag} is no flag of {:?}",
                commands_of(&name)
            );
            assert!(
                found.iter().any(|(_, d)| d.contains(&value)),
                "{name}: `{flag}` ({value}…) but the help says {found:?}"
            );
            checked += 1;
        }
    }
    // The pages quote about 25 defaults; a parser that found none would check nothing.
    assert!(checked >= 20, "only {checked} quoted defaults found");
}
