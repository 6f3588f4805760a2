//! What a chaos run keeps of how it was started (its command, every flag's value, the build,
//! the date, the host), the command that runs it again, and `--replay DIR`, which reads
//! that command back from a run's results.json.

use std::collections::BTreeMap;
use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;

use pirate::event::chaos::RunRecord;

/// Flags a replay does not copy: where the run wrote, and the replay itself.
const NOT_REPLAYED: [&str; 2] = ["out", "replay"];
/// Flags a replay may take beside `--replay`: where to write, and how to show it.
const WITH_REPLAY: [&str; 6] = ["replay", "out", "verbose", "quiet", "json", "max_message"];

/// The record of the run `argv` (the whole command line, `pirate` first) started, whose
/// subcommand's matches are `run` and whose seed is `seed`.
pub fn record(argv: &[String], run: &ArgMatches, seed: u64) -> RunRecord {
    let mut flags = BTreeMap::new();
    for id in run.ids() {
        let name = id.as_str();
        if let Ok(Some(values)) = run.try_get_raw(name) {
            let values: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
            flags.insert(name.replace('_', "-"), values.join(","));
        }
    }
    flags.insert("seed".into(), seed.to_string());
    RunRecord {
        replay: replay_command(argv, seed),
        flags,
        version: env!("CARGO_PKG_VERSION").into(),
        commit: env!("PIRATE_COMMIT").into(),
        started: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        host: host_name(),
    }
}

/// `argv` with its `--seed` set to `seed` and without `--out` or `--replay`: the command
/// that runs the same configuration again.
fn replay_command(argv: &[String], seed: u64) -> Vec<String> {
    let mut command = vec!["pirate".to_string()];
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        let name = word.trim_start_matches("--");
        let (flag, inline) = name.split_once('=').unwrap_or((name, ""));
        if word.starts_with("--") && (NOT_REPLAYED.contains(&flag) || flag == "seed") {
            if inline.is_empty() && !word.contains('=') {
                words.next(); // its value
            }
            continue;
        }
        command.push(word.clone());
    }
    command.extend(["--seed".to_string(), seed.to_string()]);
    command
}

/// This machine's name (the kernel's), or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// For `pirate chaos run --replay DIR …`: the command line to run instead, the recorded
/// command with this invocation's `--out` and output flags added. A usage error when DIR has
/// no readable record, or when other run flags were given beside `--replay`.
pub fn replay_argv(dir: &Path, argv: &[String], run: &ArgMatches) -> Result<Vec<String>, String> {
    if let Some(other) = run.ids().map(|id| id.as_str()).find(|id| {
        !WITH_REPLAY.contains(id) && run.value_source(id) == Some(ValueSource::CommandLine)
    }) {
        return Err(format!(
            "--replay runs the recorded configuration as it was: --{} cannot change it (only \
             --out, -v, -q and --json go with --replay)",
            other.replace('_', "-")
        ));
    }
    let file = dir.join("results.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "--replay {}: cannot read {}: {e}",
            dir.display(),
            file.display()
        )
    })?;
    let results: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("--replay: {} is not JSON: {e}", file.display()))?;
    let recorded: Vec<String> = results["run"]["replay"]
        .as_array()
        .and_then(|words| words.iter().map(|w| w.as_str().map(String::from)).collect())
        .ok_or_else(|| {
            format!(
                "--replay: {} records no command (written by a pirate before --replay)",
                file.display()
            )
        })?;
    let mut command = recorded;
    // This invocation's own output flags and --out, as given.
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        let flag = word
            .trim_start_matches("--")
            .split('=')
            .next()
            .unwrap_or("");
        if ["-v", "-q", "--verbose", "--quiet", "--json"].contains(&word.as_str()) {
            command.push(word.clone());
        } else if word.starts_with("--") && (flag == "out" || flag == "max-message") {
            command.push(word.clone());
            if !word.contains('=') {
                command.extend(words.next().cloned());
            }
        }
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_replay_command_keeps_every_flag_but_out_and_sets_the_seed() {
        let argv = words("pirate chaos run --pattern lazy --out run1 --seed 5 --workers=2 -v");
        assert_eq!(
            replay_command(&argv, 42),
            words("pirate chaos run --pattern lazy --workers=2 -v --seed 42")
        );
        let argv = words("pirate chaos --out=run1");
        assert_eq!(replay_command(&argv, 7), words("pirate chaos --seed 7"));
    }
}
