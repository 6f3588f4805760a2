//! `pirate generate man|completions|keys`: writes the man pages and shell completions that
//! are committed under `man/` and `completions/`, from the clap definitions, or prints a
//! new CURVE key pair.

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use pirate::error::{Error, Result};

use crate::cli::{Cli, GenerateArgs, Generated};
use crate::render::Renderer;

/// `pirate generate`: prints a key pair, or writes the files and notes each one written.
pub fn run(args: GenerateArgs, renderer: &Renderer) -> Result<()> {
    if let Generated::Keys = args.what {
        let pair = pirate::auth::credentials::KeyPair::generate()?;
        renderer.document(&pair.to_text(), &pair.to_json().to_string());
        return Ok(());
    }
    let dir = args.out.unwrap_or_else(|| {
        PathBuf::from(match args.what {
            Generated::Man => "man",
            _ => "completions",
        })
    });
    let written = generate(args.what, &dir)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", dir.display())))?;
    for path in written {
        renderer.note(&format!("wrote {path}"));
    }
    Ok(())
}

/// Writes the requested files into `dir` and returns their paths.
pub fn generate(what: Generated, dir: &Path) -> std::io::Result<Vec<String>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    match what {
        Generated::Man => {
            let mut pages = Vec::new();
            man_pages("pirate", Cli::command(), &mut pages);
            for (name, page) in pages {
                let mut buffer = Vec::new();
                clap_mangen::Man::new(page).render(&mut buffer)?;
                let path = dir.join(format!("{name}.1"));
                fs::write(&path, buffer)?;
                written.push(path.display().to_string());
            }
        }
        Generated::Keys => unreachable!("keys are printed, not written: see keys()"),
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
