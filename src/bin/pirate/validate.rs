//! The rules between flags, in one place: clap checks each value (and the simple `requires` /
//! `conflicts_with` pairs); what depends on several flags at once is checked here, after
//! parsing and before anything starts. An error is one line, a usage error (exit 2). The
//! conversions into library configs (`config()`, `mode()`) then assume these rules hold.

use crate::args::shared::ClientProtocol;
use crate::args::shared::{BstarArgs, OnSplit};
use crate::chaos::args::{ChaosArgs, ChaosCommand, ChaosRunArgs, NetArg, ProxyPlacementArg};
use crate::chaos::proxy::TrafficArgs;
use crate::cli::{ClientArgs, Command, WorkerArgs, WorkerDialect};

use pirate::event::chaos::Pattern;

/// Checks the rules of `command`'s flags.
pub fn check(command: &Command) -> Result<(), String> {
    match command {
        Command::Server(a) => {
            connects_somewhere(&a.bstar, a.credentials.given())?;
            // A Freelance server ignores the Binary Star flags (clap refuses --primary and
            // --backup with --freelance).
            if a.freelance {
                Ok(())
            } else {
                bstar(&a.bstar)
            }
        }
        Command::Broker(a) => {
            connects_somewhere(&a.bstar, a.credentials.given())?;
            bstar(&a.bstar)
        }
        Command::Client(a) => client(a),
        Command::Bench(a) => majordomo_service(a.protocol(), &a.service),
        Command::Worker(a) => worker(a),
        Command::Chaos(ChaosArgs { command, out, .. }) => match command {
            Some(ChaosCommand::Run(a)) => {
                out_dir(a.out.as_deref())?;
                chaos_run(a)
            }
            Some(ChaosCommand::Proxy(p)) => traffic(&p.traffic),
            Some(ChaosCommand::Report(_)) => Ok(()),
            None => out_dir(out.as_deref()),
        },
        Command::Generate(a) => generate(a),
        Command::Queue(_) | Command::Titanic(_) => Ok(()),
    }
}

fn generate(a: &crate::cli::GenerateArgs) -> Result<(), String> {
    use crate::cli::Generated;
    match a.what {
        Generated::Keys if a.out.is_some() => {
            Err("generate keys prints the pair: redirect it (> FILE) instead of --out".into())
        }
        Generated::Schema if a.out.is_some() => {
            Err("generate schema prints the schema: redirect it (> FILE) instead of --out".into())
        }
        Generated::Keys | Generated::Man | Generated::Schema if a.shell.is_some() => {
            Err("--shell is for generate completions".into())
        }
        Generated::Man if a.to_stdout() => Err(
            "man pages are several files: --out takes a directory (--out - is for \
             completions with --shell)"
                .into(),
        ),
        Generated::Completions if a.to_stdout() && a.shell.is_none() => Err(
            "--out - writes one shell's completions: add --shell (bash, zsh, fish, elvish, \
             powershell)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A server or broker presents credentials only to its Binary Star peer.
fn connects_somewhere(bstar: &BstarArgs, credentials: bool) -> Result<(), String> {
    if credentials && !bstar.paired() {
        return Err(
            "--plain and --curve-server are for Binary Star nodes (--primary or \
                    --backup): this role connects nowhere"
                .into(),
        );
    }
    Ok(())
}

fn bstar(b: &BstarArgs) -> Result<(), String> {
    if !b.paired() && (b.state_bind.is_some() || b.peer_state.is_some()) {
        return Err("--state-bind and --peer-state need --primary or --backup".into());
    }
    if !b.paired() && b.on_split != OnSplit::Resolve {
        return Err("--on-split needs --primary or --backup".into());
    }
    Ok(())
}

fn client(a: &ClientArgs) -> Result<(), String> {
    if a.correlate.is_some() && (a.freelance || a.titanic) {
        return Err(
            "--correlate is for Lazy Pirate and Majordomo clients, not --freelance or --titanic"
                .into(),
        );
    }
    majordomo_service(a.protocol(), &a.service)
}

/// A service is named exactly when the protocol is Majordomo.
fn majordomo_service(protocol: ClientProtocol, service: &Option<String>) -> Result<(), String> {
    match (protocol, service) {
        (ClientProtocol::Lazy, Some(_)) => {
            Err("--service needs a Majordomo protocol (--protocol mdp or mdp2)".into())
        }
        (ClientProtocol::Mdp | ClientProtocol::Mdp2, None) => {
            Err("--protocol mdp and mdp2 need --service NAME".into())
        }
        _ => Ok(()),
    }
}

fn worker(a: &WorkerArgs) -> Result<(), String> {
    let majordomo = a.majordomo();
    match (&a.service, majordomo) {
        (Some(s), true) if s.is_empty() => return Err("--service cannot be empty".into()),
        (None, true) => return Err("--protocol mdp and mdp2 need --service NAME".into()),
        (Some(_), false) => {
            return Err("--service is for Majordomo workers (--protocol mdp or mdp2)".into())
        }
        _ => {}
    }
    if majordomo && a.dialect != WorkerDialect::Auto {
        return Err("--dialect is for Simple and Paranoid workers, not mdp or mdp2".into());
    }
    if a.connect.len() > 1 && !majordomo {
        return Err("several --connect endpoints need --protocol mdp or mdp2".into());
    }
    Ok(())
}

/// The proxy's traffic flags (`pirate chaos proxy`, or `chaos run --proxy-faults`).
pub fn traffic(t: &TrafficArgs) -> Result<(), String> {
    if t.delay_rate.is_some() && !t.delayed() {
        return Err("--delay-rate needs --delay or --jitter".into());
    }
    t.faults().validate()
}

/// A run's `--out` is a directory it creates or fills: a path that names anything else is
/// refused before the run starts, not found out after it (as an i/o error with no path).
fn out_dir(out: Option<&std::path::Path>) -> Result<(), String> {
    match out {
        Some(dir) if dir.exists() && !dir.is_dir() => Err(format!(
            "--out {}: exists and is not a directory (--out takes a directory for the run's \
             files; it is created if missing)",
            dir.display()
        )),
        _ => Ok(()),
    }
}

fn chaos_run(a: &ChaosRunArgs) -> Result<(), String> {
    let pattern = a.pattern();
    let namespaces = a.net == NetArg::Namespaces;
    if let Some(kind) = a.nemesis.iter().find(|n| n.0.network().is_some()) {
        if !namespaces {
            return Err(format!(
                "--nemesis {} is a network fault: it needs --net namespaces",
                kind.0.name()
            ));
        }
    }
    if namespaces && a.connect.is_some() {
        return Err(
            "--connect does not fit --net namespaces: the run's hosts reach nothing outside \
             their own network; let the run start the broker"
                .into(),
        );
    }
    if a.worker_cmd.is_some() && pattern != Pattern::Majordomo {
        return Err("--worker-cmd needs --pattern majordomo".into());
    }
    if a.connect.is_some() && pattern != Pattern::Majordomo {
        return Err("--connect needs --pattern majordomo (an external broker)".into());
    }
    match (a.proxy, &a.proxy_faults) {
        (None, None) => {}
        (None, Some(_)) => return Err("--proxy-faults needs --proxy clients|workers".into()),
        (Some(ProxyPlacementArg::Workers), _) if pattern == Pattern::Lazy => {
            return Err("--proxy workers needs a broker or queue, not lazy".into())
        }
        // Checked now, with the proxy's own flags, rather than in a child later.
        (Some(_), _) => TrafficArgs::parse_flags(a.proxy_fault_flags())
            .and_then(|t| traffic(&t))
            .map_err(|e| format!("--proxy-faults: {e}"))?,
    }
    let servers = matches!(pattern, Pattern::Lazy | Pattern::Bstar | Pattern::Freelance);
    if servers && a.freeze.freeze_rate.is_some() {
        return Err("--freeze-rate is for workers, not a pattern of servers".into());
    }
    if a.busy_timeout.is_some() {
        if !matches!(
            pattern,
            Pattern::Paranoid | Pattern::Majordomo | Pattern::Titanic
        ) {
            return Err("--busy-timeout is for the paranoid queue or the majordomo broker".into());
        }
        if a.connect.is_some() {
            return Err(
                "--busy-timeout sets pirate's own broker, not one given by --connect: \
                        start yours with its own"
                    .into(),
            );
        }
    }
    if pattern == Pattern::Freelance && a.window > 1 {
        return Err("--window does not fit Freelance: its clients send one at a time".into());
    }
    if a.security != crate::args::auth::SecurityArg::None && a.worker_cmd.is_some() {
        return Err(
            "--security cannot reach --worker-cmd workers: give them credentials \
                    and run without --security"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn checked(args: &[&str]) -> Result<(), String> {
        let mut all = vec!["pirate"];
        all.extend_from_slice(args);
        check(&Cli::try_parse_from(all).map_err(|e| e.to_string())?.command)
    }

    #[test]
    fn rules_between_flags_are_one_line_errors() {
        let refused = |args: &[&str], says: &str| {
            let e = checked(args).expect_err(says);
            assert!(e.contains(says) && !e.contains('\n'), "{args:?}: {e}");
        };
        refused(&["server", "--plain", "u:p"], "connects nowhere");
        refused(&["broker", "--state-bind", "tcp://*:7"], "need --primary");
        refused(
            &["server", "--on-split", "stop"],
            "--on-split needs --primary",
        );
        refused(
            &["client", "--service", "s", "--protocol", "lazy"],
            "Majordomo",
        );
        refused(&["client", "--protocol", "mdp2"], "need --service");
        refused(&["worker", "--service", "s"], "for Majordomo workers");
        refused(
            &["worker", "--protocol", "mdp", "--service", ""],
            "cannot be empty",
        );
        refused(
            &["worker", "--connect", "tcp://a:1", "--connect", "tcp://b:1"],
            "several --connect",
        );
        refused(&["generate", "keys", "--out", "x"], "redirect it");
        refused(
            &["chaos", "run", "--proxy-faults", "--drop 1%"],
            "needs --proxy",
        );
        refused(
            &[
                "chaos",
                "run",
                "--proxy",
                "clients",
                "--proxy-faults",
                "--delay-rate 5%",
            ],
            "--proxy-faults: --delay-rate needs --delay",
        );
        refused(
            &["chaos", "run", "--pattern", "freelance", "--window", "2"],
            "--window",
        );
    }

    #[test]
    fn flags_that_fit_pass() {
        assert_eq!(checked(&["server", "--primary", "--plain", "u:p"]), Ok(()));
        assert_eq!(checked(&["client", "--service", "echo"]), Ok(()));
        assert_eq!(
            checked(&["worker", "--protocol", "mdp2", "--service", "s"]),
            Ok(())
        );
        let run = [
            "chaos",
            "run",
            "--proxy",
            "workers",
            "--proxy-faults",
            "--drop 10% --seed 4",
        ];
        assert_eq!(checked(&run), Ok(()));
    }

    #[test]
    fn proxy_faults_take_only_the_proxys_traffic_flags() {
        let t = TrafficArgs::parse_flags(["--drop", "30%", "--direction", "down"]).unwrap();
        assert_eq!(t.drop, Some(0.3));
        let e = TrafficArgs::parse_flags(["--drop", "2x"]).unwrap_err();
        assert!(e.starts_with("invalid value '2x'"), "{e}");
        assert!(TrafficArgs::parse_flags(["--frontend", "tcp://*:1"]).is_err());
    }
}
