//! `pirate generate man|completions`: writes the man pages and shell completions that are
//! committed under `man/` and `completions/`, from the clap definitions.

use std::fs;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, Generated};

/// Writes the requested files into `dir` and returns their paths.
pub fn generate(what: Generated, dir: &Path) -> std::io::Result<Vec<String>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    match what {
        Generated::Man => {
            let cmd = Cli::command();
            let mut pages = vec![("pirate".to_string(), cmd.clone())];
            for sub in cmd.get_subcommands() {
                let name = format!("pirate-{}", sub.get_name());
                pages.push((name.clone(), sub.clone().name(name)));
            }
            for (name, page) in pages {
                let mut buffer = Vec::new();
                clap_mangen::Man::new(page).render(&mut buffer)?;
                let path = dir.join(format!("{name}.1"));
                fs::write(&path, buffer)?;
                written.push(path.display().to_string());
            }
        }
        Generated::Completions => {
            for (shell, file) in [
                (Shell::Bash, "pirate.bash"),
                (Shell::Zsh, "_pirate"),
                (Shell::Fish, "pirate.fish"),
            ] {
                let mut buffer = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "pirate", &mut buffer);
                let path = dir.join(file);
                fs::write(&path, buffer)?;
                written.push(path.display().to_string());
            }
        }
    }
    Ok(written)
}
