//! The `pirate` binary: parses the command line, installs the signal handler, runs one role,
//! renders its events and maps the outcome to an exit code.

mod auth_args;
mod chaos_run;
mod cli;
mod generate;
mod proxy_args;
mod render;
mod values;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;

use pirate::error::{self, Error};
use pirate::event::{Event, Events, Outcome, Report};
use pirate::reactor::Stop;
use pirate::roles::{broker, bstar_server, client, freelance, queue, server, titanic, worker};
use pirate::shutdown;

use chaos_run::ChaosConfig;
use cli::{ChaosCommand, Cli, Command, Generated};
use pirate::chaos::proxy;
use pirate::faults::random_seed;
use render::Renderer;

/// First Ctrl-C/SIGTERM: ask every loop to stop (partial summary, exit 130; running `--exec`
/// commands are killed by their loops). Second: kill the commands and exit now.
fn install_signal_handler(stop: Stop) {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    let result = ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            stop.request();
            shutdown::request();
        } else {
            pirate::handler::kill_running();
            std::process::exit(error::EXIT_INTERRUPTED);
        }
    });
    if let Err(e) = result {
        eprintln!("warning: cannot install the Ctrl-C handler: {e}");
    }
}

/// Runs a role with a renderer, emits its summary, and returns the report.
fn run_role(
    renderer: &mut Renderer,
    trace: bool,
    role: impl FnOnce(&mut Events) -> error::Result<Report>,
) -> error::Result<Report> {
    let mut events = Events::new(trace, |e| renderer.render(e));
    let report = role(&mut events)?;
    events.emit(Event::Summary(report.clone()));
    Ok(report)
}

/// The exit code for a role that returned normally.
fn exit_code_of(report: &Report) -> i32 {
    match report {
        Report::Client(c) => match c.outcome {
            Outcome::Completed => error::EXIT_OK,
            Outcome::Abandoned => error::EXIT_UNAVAILABLE,
            Outcome::Interrupted => error::EXIT_INTERRUPTED,
        },
        // Interrupted: the verdict of what was seen is printed, but the run did not finish.
        Report::Chaos(c) if c.interrupted => error::EXIT_INTERRUPTED,
        // Only a valid verdict passes; invalid and indeterminate both fail a CI job.
        Report::Chaos(c) if c.valid => error::EXIT_OK,
        Report::Chaos(_) => error::EXIT_FAILED,
        // Servers, workers, queues and brokers only return when a signal stops them.
        _ => error::EXIT_INTERRUPTED,
    }
}

/// Installs the command's security policy, tracing each refused peer as an event.
fn install_security(command: &Command, output: cli::OutputArgs) -> error::Result<()> {
    let security = command.security()?;
    let mut renderer = Renderer::new(output);
    for line in security.describe() {
        renderer.render(Event::Log {
            level: pirate::event::Level::Info,
            message: line,
        });
    }
    if security.server.is_some() {
        let renderer = std::sync::Mutex::new(Renderer::new(output));
        pirate::auth::on_refusal(move |r| {
            if let Ok(mut renderer) = renderer.lock() {
                renderer.render(Event::Refused {
                    address: r.address.clone(),
                    mechanism: r.mechanism.clone(),
                    reason: r.reason.clone(),
                    total: r.total,
                });
            }
        });
    }
    pirate::auth::install(security)
}

fn run(cli: Cli, stop: Stop) -> error::Result<i32> {
    let output = cli.output;
    let trace = output.verbose;
    pirate::transport::set_max_message(cli.limits.max_message);
    install_security(&cli.command, output)?;
    match cli.command {
        Command::Server(args) => {
            let mut renderer = Renderer::new(output);
            if let Some(config) = args.freelance_config() {
                let report = run_role(&mut renderer, trace, |ev| {
                    freelance::run_server(&config, &stop, ev)
                })?;
                return Ok(exit_code_of(&report));
            }
            let report = match args.bstar_config().map_err(Error::Usage)? {
                Some(config) => {
                    run_role(&mut renderer, trace, |ev| bstar_server::run(&config, ev))?
                }
                None => {
                    let config = args.config();
                    run_role(&mut renderer, trace, |ev| server::run(&config, &stop, ev))?
                }
            };
            Ok(exit_code_of(&report))
        }
        Command::Chaos(args) => {
            let exe = std::env::current_exe()
                .map_err(|e| Error::Internal(format!("cannot find the pirate binary: {e}")))?;
            let config = match args.command {
                Some(ChaosCommand::Proxy(proxy_args)) => {
                    let config = proxy_args.config().map_err(Error::Usage)?;
                    let mut renderer = Renderer::new(output);
                    let report = run_role(&mut renderer, trace, |ev| proxy::run_role(&config, ev))?;
                    return Ok(exit_code_of(&report));
                }
                Some(ChaosCommand::Run(run_args)) => run_args.config(exe).map_err(Error::Usage)?,
                None => {
                    let mut config = ChaosConfig::demo(exe, args.seed.unwrap_or_else(random_seed));
                    config.out = args.out;
                    config
                }
            };
            let mut renderer = Renderer::new(output).with_live_view();
            let report = run_role(&mut renderer, trace, |ev| {
                chaos_run::run(&config, ev).map(|r| Report::Chaos(Box::new(r)))
            })?;
            Ok(exit_code_of(&report))
        }
        Command::Titanic(args) => {
            let config = args.config(trace);
            let mut renderer = Renderer::new(output);
            let report = run_role(&mut renderer, trace, |ev| titanic::run(&config, ev))?;
            Ok(exit_code_of(&report))
        }
        Command::Broker(args) => {
            let config = args.config();
            let pair = args.bstar.options().map_err(Error::Usage)?;
            let mut renderer = Renderer::new(output);
            let report = run_role(&mut renderer, trace, |ev| match &pair {
                Some(options) => broker::run_bstar(&config, options, ev),
                None => broker::run(&config, ev),
            })?;
            Ok(exit_code_of(&report))
        }
        Command::Queue(args) => {
            let config = args.config();
            let mut renderer = Renderer::new(output);
            let report = run_role(&mut renderer, trace, |ev| queue::run(&config, ev))?;
            Ok(exit_code_of(&report))
        }
        Command::Worker(args) => {
            let config = args.config().map_err(Error::Usage)?;
            let mut renderer = Renderer::new(output);
            let report = run_role(&mut renderer, trace, |ev| worker::run(&config, ev))?;
            Ok(exit_code_of(&report))
        }
        Command::Client(args) => {
            let config = args.config().map_err(Error::Usage)?;
            let titanic_config = args.titanic_config();
            let freelance_config = args.freelance_config();
            let mut renderer = Renderer::new(output).with_progress(args.count);
            // Send: the Freelance client reads its requests on a thread of their own.
            let requests: Box<dyn Iterator<Item = String> + Send> = if let Some(n) = args.count {
                Box::new((1..=n).map(|i| i.to_string()))
            } else if !args.requests.is_empty() {
                Box::new(args.requests.into_iter())
            } else {
                // Lazily, so a pipeline can feed requests as they come. `Stdin` rather than
                // its lock, which may not leave the thread that took it.
                Box::new(
                    std::io::BufReader::new(std::io::stdin())
                        .lines()
                        .map_while(Result::ok),
                )
            };
            let report = match (titanic_config, freelance_config) {
                (Some(titanic), _) => run_role(&mut renderer, trace, |ev| {
                    titanic::run_client(&titanic, requests, ev)
                })?,
                (_, Some(freelance)) => run_role(&mut renderer, trace, |ev| {
                    freelance::run_client(&freelance, requests, &stop, ev)
                })?,
                _ => run_role(&mut renderer, trace, |ev| {
                    client::run(&config, requests, ev)
                })?,
            };
            Ok(exit_code_of(&report))
        }
        Command::Generate(args) => {
            if let Generated::Keys = args.what {
                if args.out.is_some() {
                    return Err(Error::Usage(
                        "generate keys prints the pair: redirect it (> FILE) instead of --out"
                            .into(),
                    ));
                }
                print!("{}", generate::keys(output.json)?);
                return Ok(error::EXIT_OK);
            }
            let dir = args.out.unwrap_or_else(|| {
                PathBuf::from(match args.what {
                    Generated::Man => "man",
                    _ => "completions",
                })
            });
            let written = generate::generate(args.what, &dir)
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", dir.display())))?;
            if !output.quiet {
                for path in written {
                    eprintln!("wrote {path}");
                }
            }
            Ok(error::EXIT_OK)
        }
    }
}

/// Parses the command line. A usage error is one line on stderr and exit 2, before anything
/// starts (clap's tip, when it has one, joins that line); help and version print as usual.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        // Help, version, and `pirate` alone (help on stderr, exit 2): as clap prints them.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.to_string()));
            std::process::exit(error::EXIT_USAGE);
        }
    }
}

/// clap's multi-line error as one line: the `error:` line (with the list that follows it
/// when it ends in `:`, as "required arguments were not provided:" does), and its `tip:`.
fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines
        .next()
        .unwrap_or("error: invalid command line")
        .to_string();
    if line.ends_with(':') {
        let listed: Vec<&str> = lines
            .clone()
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("tip:"))
            .collect();
        line.push(' ');
        line.push_str(&listed.join(", "));
    }
    if let Some(tip) = lines.find(|l| l.starts_with("tip:")) {
        line.push_str(" (");
        line.push_str(tip);
        line.push(')');
    }
    line
}

fn main() -> ExitCode {
    let cli = parse_cli();
    let stop = Stop::new();
    install_signal_handler(stop.clone());
    let code = match run(cli, stop) {
        Ok(code) => code,
        Err(Error::Interrupted) => error::EXIT_INTERRUPTED,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    // A command still running on a work thread (its loop had no time to see the stop flag)
    // dies with us, its process group too.
    pirate::handler::kill_running();
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_clap_error_listing_missing_flags_keeps_the_list_on_its_line() {
        let text = "error: the following required arguments were not provided:\n  \
                    --curve-server <PUBLIC_KEY>\n\nUsage: pirate worker --curve-server \
                    <PUBLIC_KEY>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(text),
            "error: the following required arguments were not provided: \
             --curve-server <PUBLIC_KEY>"
        );
    }
}
