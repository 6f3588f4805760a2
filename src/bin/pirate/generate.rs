//! `pirate generate man|completions|keys`: writes the man pages and shell completions that
//! are committed under `man/` and `completions/`, from the clap definitions, or prints a
//! new CURVE key pair. Completions for one `--shell` can go to stdout (`--out -`). Each man
//! page gets, besides clap's sections, the after-help blocks as sections of their own (EXIT
//! STATUS, VERDICT), EXAMPLES taken from the `sh` blocks of the README and docs/, and SEE ALSO.

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};

use pirate::auth::credentials::z85;
use pirate::error::{Error, Result};
use pirate::event::Event;

use crate::cli::{Cli, GenerateArgs, Generated};
use crate::help::EXIT_CODES;
use crate::render::Renderer;

/// The documentation whose `sh` blocks are the man pages' EXAMPLES, the README first. A new
/// page under docs/ with examples joins this list.
const DOCS: [(&str, &str); 14] = [
    ("README.md", include_str!("../../../README.md")),
    (
        "docs/lazy-pirate.md",
        include_str!("../../../docs/lazy-pirate.md"),
    ),
    (
        "docs/paranoid-pirate.md",
        include_str!("../../../docs/paranoid-pirate.md"),
    ),
    (
        "docs/majordomo.md",
        include_str!("../../../docs/majordomo.md"),
    ),
    ("docs/titanic.md", include_str!("../../../docs/titanic.md")),
    (
        "docs/binary-star.md",
        include_str!("../../../docs/binary-star.md"),
    ),
    (
        "docs/freelance.md",
        include_str!("../../../docs/freelance.md"),
    ),
    ("docs/chaos.md", include_str!("../../../docs/chaos.md")),
    ("docs/bench.md", include_str!("../../../docs/bench.md")),
    ("docs/output.md", include_str!("../../../docs/output.md")),
    (
        "docs/security.md",
        include_str!("../../../docs/security.md"),
    ),
    (
        "docs/benchmarks.md",
        include_str!("../../../docs/benchmarks.md"),
    ),
    ("docs/fuzzing.md", include_str!("../../../docs/fuzzing.md")),
    (
        "docs/contributing.md",
        include_str!("../../../docs/contributing.md"),
    ),
];

/// The shells written when no `--shell` is given, and their file names.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// `pirate generate`: prints a key pair or one shell's completions, or writes the files and
/// notes each one written (under --json, one object listing them).
pub fn run(args: GenerateArgs, renderer: &Renderer) -> Result<()> {
    if let Generated::Schema = args.what {
        // A JSON document already, with or without --json.
        renderer.bytes(pirate::json_lines::schema_text().as_bytes());
        return Ok(());
    }
    if let Generated::Keys = args.what {
        let pair = pirate::auth::credentials::KeyPair::generate()?;
        let keys = Event::Keys {
            public: z85(&pair.public),
            secret: z85(&pair.secret),
        };
        renderer.document(&pair.to_text(), &keys);
        return Ok(());
    }
    if args.to_stdout() {
        // validate: only completions, for one shell.
        let shell = args.shell.expect("--out - has --shell");
        renderer.bytes(&completions(shell));
        return Ok(());
    }
    let dir = args.out.unwrap_or_else(|| {
        PathBuf::from(match args.what {
            Generated::Man => "man",
            _ => "completions",
        })
    });
    let written = generate(args.what, args.shell, &dir)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", dir.display())))?;
    for path in &written {
        renderer.note(&format!("wrote {path}"));
    }
    renderer.document("", &Event::Generated { written });
    Ok(())
}

/// One shell's completion script.
fn completions(shell: Shell) -> Vec<u8> {
    let mut buffer = Vec::new();
    clap_complete::generate(
        shell,
        &mut typed_values(Cli::command()),
        "pirate",
        &mut buffer,
    );
    if shell == Shell::Bash {
        let script = String::from_utf8(buffer).expect("clap_complete writes UTF-8");
        return bash_report_directories(&script).into_bytes();
    }
    buffer
}

/// A value that is not a path (an endpoint, a duration, a size, a number) is typed, not
/// picked from files: without this every such flag completed file names, `--connect <TAB>`
/// among them. clap infers a path hint only for path-typed flags; the rest say "other".
fn typed_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let takes_value = arg.get_action().takes_values();
        if takes_value && arg.get_value_hint() == clap::ValueHint::Unknown {
            arg.value_hint(clap::ValueHint::Other)
        } else {
            arg
        }
    })
    .mut_subcommands(typed_values)
}

/// clap_complete's bash script completes no positional value, so `pirate chaos report <TAB>`
/// offered only flags; its case adds the directories (the DIR a run wrote with --out).
fn bash_report_directories(script: &str) -> String {
    const CASE: &str = "        pirate__subcmd__chaos__subcmd__report)\n";
    const FLAGS: &str = r#"COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )"#;
    const FLAGS_AND_DIRS: &str =
        r#"COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") $(compgen -d -- "${cur}") )"#;
    let Some(start) = script.find(CASE) else {
        return script.to_string();
    };
    let end = script[start..]
        .find("\n            ;;\n")
        .map_or(script.len(), |i| start + i);
    format!(
        "{}{}{}",
        &script[..start],
        script[start..end].replace(FLAGS, FLAGS_AND_DIRS),
        &script[end..]
    )
}

/// The file a shell's completions are written to.
fn completion_file(shell: Shell) -> String {
    match shell {
        Shell::Bash => "pirate.bash".into(),
        Shell::Zsh => "_pirate".into(),
        Shell::Fish => "pirate.fish".into(),
        Shell::Elvish => "pirate.elv".into(),
        Shell::PowerShell => "_pirate.ps1".into(),
        other => format!("pirate.{other}"),
    }
}

/// Writes the requested files into `dir` (completions: every shell, or `shell`) and returns
/// their paths.
pub fn generate(what: Generated, shell: Option<Shell>, dir: &Path) -> std::io::Result<Vec<String>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    match what {
        Generated::Man => {
            // Without clap's `help` subcommands, which have no page to list; built, so that
            // the global options (-v, -q, --json, --max-message) are on every page.
            let mut cli = without_help_subcommands(Cli::command());
            cli.build();
            let mut pages = Vec::new();
            man_pages("pirate", cli, &mut pages);
            let names: Vec<String> = pages.iter().map(|(name, _)| name.clone()).collect();
            for (name, page) in pages {
                let path = dir.join(format!("{name}.1"));
                fs::write(&path, man_page(&name, page, &names)?)?;
                written.push(path.display().to_string());
            }
        }
        Generated::Keys | Generated::Schema => {
            unreachable!("keys and the schema are printed, not written: see run()")
        }
        Generated::Completions => {
            let shells = shell.map_or(SHELLS.to_vec(), |s| vec![s]);
            for shell in shells {
                let path = dir.join(completion_file(shell));
                fs::write(&path, completions(shell))?;
                written.push(path.display().to_string());
            }
        }
    }
    Ok(written)
}

/// `cmd` and its subcommands at any depth without the `help` subcommand clap adds.
fn without_help_subcommands(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommands)
}

/// One page for `cmd`, named `name`, then one per subcommand at any depth (`pirate-chaos-run`),
/// so every flag is in some page.
fn man_pages(name: &str, cmd: clap::Command, pages: &mut Vec<(String, clap::Command)>) {
    let subcommands: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    pages.push((name.to_string(), cmd));
    for sub in subcommands {
        let sub_name = format!("{name}-{}", sub.get_name());
        man_pages(&sub_name, sub.name(sub_name.clone()), pages);
    }
}

/// Page `name`: clap's sections (its after-help as sections of their own instead of clap's
/// "EXTRA"), EXIT STATUS on every page, EXAMPLES and SEE ALSO. `pages` names every page.
fn man_page(name: &str, cmd: clap::Command, pages: &[String]) -> std::io::Result<Vec<u8>> {
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let has_subcommands = cmd.get_subcommands().next().is_some();
    let synopsis_of = cmd.clone();
    let man = clap_mangen::Man::new(cmd);
    let mut buffer = Vec::new();
    man.render_title(&mut buffer)?;
    man.render_name_section(&mut buffer)?;
    Roff::default()
        .control("SH", ["SYNOPSIS"])
        .text([roman(synopsis(name, &synopsis_of))])
        .to_writer(&mut buffer)?;
    man.render_description_section(&mut buffer)?;
    man.render_options_section(&mut buffer)?;
    if has_subcommands {
        man.render_subcommands_section(&mut buffer)?;
    }
    let mut roff = Roff::default();
    let mut blocks = after_help_sections(&after);
    if !blocks.iter().any(|(heading, _)| heading == "EXIT STATUS") {
        blocks.extend(after_help_sections(EXIT_CODES));
    }
    for (heading, body) in blocks {
        roff.control("SH", [heading.as_str()]);
        preformatted(&mut roff, &body);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(ENVIRONMENT)]);
    roff.control("SH", ["EXAMPLES"]);
    let examples = examples(name, pages);
    if examples.is_empty() {
        roff.text([roman("See docs/ for walk-throughs of every pattern.")]);
    } else {
        preformatted(&mut roff, &examples.join("\n"));
    }
    roff.control("SH", ["SEE ALSO"]);
    let others: Vec<String> = pages
        .iter()
        .filter(|p| p.as_str() != name)
        .map(|p| format!("{p}(1)"))
        .collect();
    roff.text([roman(others.join(", "))]);
    roff.control("PP", []);
    roff.text([roman(
        "The ZeroMQ Guide, chapter 4, Reliable Request-Reply Patterns: \
         https://zguide.zeromq.org/docs/chapter4/; the RFCs 6/PPP, 7/MDP, 8/MMI, 9/TSP, \
         10/FLP and 18/MDP at https://rfc.zeromq.org; the README and docs/ of pirate.",
    )]);
    roff.to_writer(&mut buffer)?;
    man.render_version_section(&mut buffer)?;
    Ok(buffer)
}

/// The variables pirate reads, on every page.
const ENVIRONMENT: &str = "NO_COLOR: when set to anything but an empty string, the chaos \
     verdict and live view are not coloured (see https://no-color.org). Colour is used only \
     when stderr is a terminal. No other variable changes what pirate does.";

/// The page's SYNOPSIS: the command, then every flag with its value's name (clap_mangen's
/// own synopsis lists `[--connect]` with no hint of the value it takes), then positionals.
fn synopsis(name: &str, cmd: &clap::Command) -> String {
    let mut words = vec![name.replace('-', " ")];
    let mut positionals = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = || {
            arg.get_value_names()
                .map(|names| {
                    names
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
        };
        if arg.is_positional() {
            let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
            let dots = if many { "..." } else { "" };
            positionals.push(if arg.is_required_set() {
                format!("<{}>{dots}", value())
            } else {
                format!("[{}]{dots}", value())
            });
            continue;
        }
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("-{short}|--{long}"),
            (Some(short), None) => format!("-{short}"),
            (None, Some(long)) => format!("--{long}"),
            (None, None) => continue,
        };
        let takes_value = arg.get_action().takes_values();
        let word = if takes_value {
            format!("{flag} <{}>", value())
        } else {
            flag
        };
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    words.extend(positionals);
    match cmd.get_subcommands().next() {
        Some(_) if cmd.is_subcommand_required_set() => words.push("<COMMAND>".into()),
        Some(_) => words.push("[COMMAND]".into()),
        None => {}
    }
    words.join(" ")
}

/// Lines as they are (no filling), for command lines and tables.
fn preformatted(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

/// An after-help text cut at its `HEADING:` lines (a line of capitals ending in `:`): each
/// heading with the lines under it, blank lines around trimmed.
fn after_help_sections(text: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let heading = line
            .strip_suffix(':')
            .filter(|h| !h.is_empty() && !h.starts_with(' ') && *h == h.to_uppercase());
        match (heading, sections.last_mut()) {
            (Some(h), _) => sections.push((h.to_string(), String::new())),
            (None, Some((_, body))) => {
                body.push_str(line);
                body.push('\n');
            }
            // Text before any heading: the section clap would have called EXTRA.
            (None, None) if line.trim().is_empty() => {}
            (None, None) => sections.push(("NOTES".into(), format!("{line}\n"))),
        }
    }
    for (_, body) in &mut sections {
        *body = body.trim_matches('\n').to_string();
    }
    sections
}

/// The EXAMPLES of page `name`: every documentation `sh` block with a command that runs that
/// exact subcommand (`pirate client …`, `printf … | pirate client`), whole, under a comment
/// naming the page and section it comes from, so that a step of a walk-through keeps the
/// steps around it. `pirate(1)` gets the README's blocks.
fn examples(name: &str, pages: &[String]) -> Vec<String> {
    let mut examples = Vec::new();
    for block in doc_blocks() {
        let wanted = if name == "pirate" {
            block.source == "README.md" && block.lines.iter().any(|l| page_of(l, pages).is_some())
        } else {
            block
                .lines
                .iter()
                .any(|l| page_of(l, pages).as_deref() == Some(name))
        };
        if wanted {
            if !examples.is_empty() {
                examples.push(String::new());
            }
            examples.push(format!("# {}: {}", block.source, block.heading));
            examples.extend(block.lines);
        }
    }
    examples
}

/// One `sh` block of the documentation: the file, the heading it stands under, its lines.
struct DocBlock {
    source: &'static str,
    heading: String,
    lines: Vec<String>,
}

/// Every `sh` block of the README and the docs, in order.
fn doc_blocks() -> Vec<DocBlock> {
    let mut blocks = Vec::new();
    for (source, text) in DOCS {
        let mut heading = String::new();
        // The block being read, and whether it is an `sh` one (other fences are skipped).
        let mut open: Option<(bool, Vec<String>)> = None;
        for line in text.lines() {
            match (&mut open, line.strip_prefix("```")) {
                (None, Some(info)) => {
                    open = Some((info == "sh" || info.starts_with("sh "), Vec::new()))
                }
                (Some(_), Some("")) => {
                    if let Some((true, lines)) = open.take() {
                        blocks.push(DocBlock {
                            source,
                            heading: heading.clone(),
                            lines,
                        });
                    }
                }
                (Some((_, lines)), _) => lines.push(line.to_string()),
                (None, None) if line.starts_with('#') => {
                    heading = line.trim_start_matches('#').trim().to_string()
                }
                (None, None) => {}
            }
        }
    }
    blocks
}

/// The page of the subcommand a shell line runs: the longest `pirate-<word>-<word>` that is
/// a page, after `pirate` at the start of a command (line start, `| `, `do `).
fn page_of(line: &str, pages: &[String]) -> Option<String> {
    let start = if line.starts_with("pirate ") {
        0
    } else {
        ["| pirate ", "do pirate "]
            .iter()
            .filter_map(|p| line.find(p).map(|i| i + p.len() - "pirate ".len()))
            .min()?
    };
    let mut words = line[start..].split_whitespace();
    let mut name = words.next()?.to_string();
    let mut page = None;
    for word in words {
        name = format!("{name}-{word}");
        if pages.contains(&name) {
            page = Some(name.clone());
        } else {
            break;
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Vec<String> {
        [
            "pirate",
            "pirate-client",
            "pirate-chaos",
            "pirate-chaos-run",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn a_line_belongs_to_the_longest_subcommand_it_runs() {
        let p = pages();
        let page = |l: &str| page_of(l, &p);
        assert_eq!(
            page("pirate client hello").as_deref(),
            Some("pirate-client")
        );
        assert_eq!(
            page("printf 'a\\n' | pirate client").as_deref(),
            Some("pirate-client")
        );
        assert_eq!(
            page("pirate chaos run --seed 3").as_deref(),
            Some("pirate-chaos-run")
        );
        assert_eq!(page("pirate chaos").as_deref(), Some("pirate-chaos"));
        assert_eq!(page("cargo run -- chaos"), None);
        assert_eq!(page("# pirate client in a comment"), None);
    }

    #[test]
    fn after_help_blocks_become_sections_named_by_their_headings() {
        let sections = after_help_sections("VERDICT:\n  VALID  ok\n\nEXIT STATUS:\n  0 success\n");
        assert_eq!(
            sections,
            [
                ("VERDICT".to_string(), "  VALID  ok".to_string()),
                ("EXIT STATUS".to_string(), "  0 success".to_string())
            ]
        );
    }
}
