//! `report.html` on disk: what a run with `--out DIR` writes next to its results, and
//! `pirate chaos report DIR`, which renders it again for a past run from the files the run
//! left. Both read the files back the same way before rendering
//! ([`pirate::chaos::html::render`]), so a re-rendered page equals the run's own.

use std::path::{Path, PathBuf};

use clap::Args;

use pirate::chaos::history::{read_history, Record};
use pirate::chaos::html::{self, RunResults};
use pirate::error::{Error, Result};
use pirate::event::Event;

use crate::render::Renderer;

/// `pirate chaos report DIR`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The directory a run wrote with --out (results.json, history.jsonl); the page is
    /// written there as report.html and its path printed
    #[arg(value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: std::path::PathBuf,
}

/// A run's files, read back: its history, its results, and how many history lines were not
/// records. A missing or unreadable file is a usage error naming it.
pub fn load(dir: &Path) -> Result<(Vec<Record>, RunResults, u64)> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| {
            Error::Usage(format!(
                "{}: not a chaos run's --out directory: cannot read {name}: {e}",
                dir.display()
            ))
        })
    };
    let results = RunResults::from_json(&read("results.json")?)
        .map_err(|e| Error::Usage(format!("{}: results.json: {e}", dir.display())))?;
    let history = read("history.jsonl")?;
    let (records, skipped) = read_history(&history);
    if records.is_empty() && skipped > 0 {
        return Err(Error::Usage(format!(
            "{}: history.jsonl: not a chaos history ({skipped} lines, none a record)",
            dir.display()
        )));
    }
    Ok((records, results, skipped))
}

/// Renders the page of the run in `dir` from its files and writes it there.
pub fn write(dir: &Path) -> Result<PathBuf> {
    let (records, results, skipped) = load(dir)?;
    let path = dir.join(html::FILE);
    std::fs::write(&path, html::render(&records, &results, skipped))?;
    Ok(path)
}

/// `pirate chaos report DIR`: writes DIR/report.html and prints its path.
pub fn run(args: &ReportArgs, renderer: &Renderer) -> Result<()> {
    let path = write(&args.dir)?;
    let shown = path.display().to_string();
    renderer.document(
        &format!("{shown}\n"),
        &Event::ReportWritten {
            report: shown.clone(),
        },
    );
    Ok(())
}
