//! The `pirate` binary: parses the command line, checks the rules between its flags,
//! installs the signal handler, runs one role with its events rendered, and maps the outcome
//! to an exit code. [`dispatch`] is the one place a command is registered.

mod args;
mod bar;
mod bench;
mod chaos;
mod cli;
mod generate;
mod help;
mod render;
mod validate;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use pirate::error::{self, Error};
use pirate::event::{Event, Events, Outcome, Report};
use pirate::reactor::Stop;
use pirate::roles::{broker, bstar_server, client, freelance, queue, server, titanic, worker};

use chaos::args::{ChaosArgs, ChaosCommand};
use chaos::run::ChaosConfig;
use cli::InputError;
use cli::{Cli, ClientMode, Command, ServerMode};
use pirate::chaos::proxy;
use pirate::faults::random_seed;
use pirate::feed::{self, Split};
use render::{Renderer, ReplyEnd, View};

/// First Ctrl-C/SIGTERM: raise `stop`, the one stop signal every loop of the run holds
/// (partial summary, exit 130; running `--exec` commands are killed on the way out, in
/// `main`). Second: kill the commands and exit now.
fn install_signal_handler(stop: Stop) {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    let result = ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            stop.request();
        } else {
            pirate::handler::kill_running();
            std::process::exit(error::EXIT_INTERRUPTED);
        }
    });
    if let Err(e) = result {
        eprintln!("warning: cannot install the Ctrl-C handler: {e}");
    }
}

/// The library call that runs a role, its config captured.
type RoleCall = Box<dyn FnOnce(&mut Events) -> error::Result<Report>>;

/// A role of the library ready to run with its events rendered: how its progress shows, how
/// its replies end on stdout, what went wrong reading its requests, and the call that runs it.
struct RoleRun {
    view: View,
    end: ReplyEnd,
    input: InputError,
    call: RoleCall,
}

impl RoleRun {
    fn new(call: impl FnOnce(&mut Events) -> error::Result<Report> + 'static) -> Self {
        RoleRun {
            view: View::Plain,
            end: ReplyEnd::Newline,
            input: InputError::default(),
            call: Box::new(call),
        }
    }

    fn with_view(self, view: View) -> Self {
        RoleRun { view, ..self }
    }

    /// A client's: its view, how its replies end (-0, --whole), and its stdin's error.
    fn client(self, a: &cli::ClientArgs, input: InputError) -> Self {
        let end = match a.split() {
            Split::Lines => ReplyEnd::Newline,
            Split::Nul => ReplyEnd::Nul,
            Split::Whole => ReplyEnd::Nothing,
        };
        let view = a.count.map_or(View::Plain, View::Progress);
        RoleRun {
            view,
            end,
            input,
            ..self
        }
    }

    /// Runs the role with its events rendered; its exit code.
    fn run(self, output: args::shared::OutputArgs, stop: &Stop) -> error::Result<i32> {
        let report = render::run(output, self.view, self.end, stop, self.call)?;
        if render::stdout_closed() {
            return Ok(error::EXIT_STDOUT_CLOSED);
        }
        let code = exit_code_of(&report);
        match self.input.get() {
            // Requests before the bad one were sent and answered; the rest never went out.
            Some(why) => {
                eprintln!("error: {why}");
                Ok(if code == error::EXIT_OK {
                    error::EXIT_FAILED
                } else {
                    code
                })
            }
            None => Ok(code),
        }
    }
}

/// A report that says `completed` though a stop was raised (a loop that does not watch the
/// stop, whose requests ended for it) says `interrupted`.
fn interrupted_if(stop: &Stop, report: Report) -> Report {
    match report {
        Report::Client(mut c) if stop.requested() && c.outcome == Outcome::Completed => {
            c.outcome = Outcome::Interrupted;
            Report::Client(c)
        }
        other => other,
    }
}

/// The one dispatch, and the one place a command is registered: each subcommand (and mode)
/// to what runs it and its exit code. A role of the library gets the config its flags make
/// and runs as a [`RoleRun`], its events rendered; `generate`, `bench`, `chaos report` and
/// `titanic --check` print what they make themselves. The flags' rules are in `validate`.
fn dispatch(
    command: Command,
    output: args::shared::OutputArgs,
    invocation: &Invocation,
    stop: &Stop,
) -> error::Result<i32> {
    let role = {
        let stop = stop.clone();
        match command {
            Command::Generate(args) => {
                generate::run(args, &Renderer::new(output))?;
                return Ok(error::EXIT_OK);
            }
            Command::Bench(args) => return bench::run(args, output, &stop),
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Report(args)),
                ..
            }) => {
                chaos::report::run(&args, &Renderer::new(output))?;
                return Ok(error::EXIT_OK);
            }
            Command::Titanic(cli::TitanicArgs {
                check: Some(dir), ..
            }) => return Ok(check_store(&dir, output)),
            Command::Server(a) => match a.mode() {
                ServerMode::Lazy(c) => RoleRun::new(move |ev| server::run(&c, &stop, ev)),
                ServerMode::Bstar(c) => RoleRun::new(move |ev| bstar_server::run(&c, &stop, ev)),
                ServerMode::Freelance(c) => {
                    RoleRun::new(move |ev| freelance::run_server(&c, &stop, ev))
                }
            },
            Command::Client(a) => {
                let input = InputError::default();
                let mut requests = a.requests(pirate::transport::max_message(), &input);
                if let Some(interval) = a.interval {
                    requests = Box::new(feed::paced(requests, interval, stop.clone()));
                }
                match a.mode() {
                    // A run whose requests ended because a signal stopped their reader (a
                    // paced or Titanic feed, stdin) finished them all, yet was interrupted: 130.
                    ClientMode::Direct(c) => RoleRun::new(move |ev| {
                        let report = client::run(&c, requests, &stop, ev)?;
                        Ok(interrupted_if(&stop, report))
                    }),
                    ClientMode::Titanic(c) => RoleRun::new(move |ev| {
                        // Its loop reads requests itself: Ctrl-C must not wait for the next line.
                        let requests = feed::until_stopped(requests, stop.clone());
                        let report = titanic::run_client(&c, requests, &stop, ev)?;
                        Ok(interrupted_if(&stop, report))
                    }),
                    ClientMode::Freelance(c) => RoleRun::new(move |ev| {
                        let report = freelance::run_client(&c, requests, &stop, ev)?;
                        Ok(interrupted_if(&stop, report))
                    }),
                }
                .client(&a, input)
            }
            Command::Queue(a) => {
                let c = a.config();
                RoleRun::new(move |ev| queue::run(&c, &stop, ev))
            }
            Command::Worker(a) => {
                let c = a.config();
                RoleRun::new(move |ev| worker::run(&c, &stop, ev))
            }
            Command::Broker(a) => {
                let c = a.config();
                match a.bstar.options() {
                    Some(pair) => RoleRun::new(move |ev| broker::run_bstar(&c, &pair, &stop, ev)),
                    None => RoleRun::new(move |ev| broker::run(&c, &stop, ev)),
                }
            }
            Command::Titanic(a) => {
                let c = a.config();
                RoleRun::new(move |ev| titanic::run(&c, &stop, ev))
            }
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Proxy(a)),
                ..
            }) => {
                let c = a.config();
                RoleRun::new(move |ev| proxy::run_role(&c, &stop, ev))
            }
            Command::Chaos(ChaosArgs {
                command: Some(ChaosCommand::Run(a)),
                ..
            }) => {
                let c = a.config(pirate_exe()?).map_err(Error::Usage)?;
                chaos_run(c, invocation, stop)
            }
            Command::Chaos(ChaosArgs {
                command: None,
                seed,
                out,
            }) => {
                let demo = ChaosConfig::demo(pirate_exe()?, seed.unwrap_or_else(random_seed));
                chaos_run(ChaosConfig { out, ..demo }, invocation, stop)
            }
        }
    };
    role.run(output, stop)
}

/// This very binary, which `pirate chaos run` starts a process of per role.
fn pirate_exe() -> error::Result<std::path::PathBuf> {
    std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find the pirate binary: {e}")))
}

/// `pirate chaos run` (or `pirate chaos`, the demonstration), recording how it was started:
/// the matches of `chaos run`, or of `chaos` itself for the demonstration.
fn chaos_run(mut config: ChaosConfig, invocation: &Invocation, stop: Stop) -> RoleRun {
    let chaos = invocation.matches.subcommand_matches("chaos");
    if let Some(matches) = chaos.map(|m| m.subcommand_matches("run").unwrap_or(m)) {
        config.record = chaos::record::record(&invocation.argv, matches, config.seed);
    }
    RoleRun::new(move |ev| chaos::run::run(&config, &stop, ev).map(|r| Report::Chaos(Box::new(r))))
        .with_view(View::Live)
}

/// The exit code for a role that returned normally.
fn exit_code_of(report: &Report) -> i32 {
    match report {
        Report::Client(c) => match c.outcome {
            Outcome::Completed => error::EXIT_OK,
            Outcome::Abandoned => error::EXIT_UNAVAILABLE,
            Outcome::NoService => error::EXIT_NO_SERVICE,
            Outcome::WrongProtocol => error::EXIT_PROTOCOL,
            Outcome::AuthRefused => error::EXIT_AUTH,
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

/// Raises the descriptor limit, sets the connection budget that fits it (or the flags'), and
/// under `-v` says both and traces each refused connection.
fn install_budget(limits: &args::shared::LimitArgs, output: args::shared::OutputArgs) {
    let descriptors = pirate::connections::raise_descriptor_limit();
    let now = descriptors.as_ref().map_or(1024, |&(_, now)| now);
    let budget = limits.budget(now);
    pirate::connections::set_budget(budget);
    if !output.verbose {
        return;
    }
    let limit = match descriptors {
        Ok((before, now)) if now > before => format!("{now} (raised from {before})"),
        Ok((_, now)) => format!("{now}"),
        Err(e) => format!("unknown ({e}), budget as for 1024"),
    };
    let no_limit = |n: u32| match n {
        0 => "no limit".to_string(),
        n => n.to_string(),
    };
    Renderer::new(output).render(Event::Log {
        level: pirate::event::Level::Info,
        message: format!(
            "descriptor limit {limit}; each bound TCP socket: --max-connections {}, \
             --max-connections-per-address {}, --handshake-timeout {}",
            no_limit(budget.max),
            no_limit(budget.per_address),
            humantime::format_duration(budget.handshake)
        ),
    });
    let renderer = std::sync::Mutex::new(Renderer::new(output));
    pirate::connections::on_refusal(move |r| {
        if let Ok(mut renderer) = renderer.lock() {
            renderer.render(Event::ConnectionRefused {
                endpoint: r.endpoint.clone(),
                peer: r.peer.clone(),
                reason: r.reason.name().to_string(),
                total: r.total,
            });
        }
    });
}

/// Installs the command's security policy, tracing each refused peer as an event.
fn install_security(
    command: &Command,
    output: args::shared::OutputArgs,
    stop: &Stop,
) -> error::Result<()> {
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
    pirate::auth::install(security, stop)
}

fn run(cli: Cli, invocation: &Invocation, stop: Stop) -> error::Result<i32> {
    let output = args::shared::OutputArgs {
        role: cli.command.role(),
        ..cli.output
    };
    validate::check(&cli.command).map_err(Error::Usage)?;
    pirate::transport::set_max_message(cli.limits.max_message);
    install_budget(&cli.limits, output);
    install_security(&cli.command, output, &stop)?;
    dispatch(cli.command, output, invocation, &stop)
}

/// The command line as given (lossy where not UTF-8) and clap's matches of it: what a chaos
/// run records of how it was started.
struct Invocation {
    argv: Vec<String>,
    matches: clap::ArgMatches,
}

/// `argv` parsed into the flags' structs and the matches they came from.
fn parse(argv: &[String]) -> Result<(Cli, clap::ArgMatches), clap::Error> {
    let matches = parser().try_get_matches_from(argv)?;
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

/// `pirate chaos run --replay DIR`: the command line recorded in DIR, to parse instead.
fn replayed(
    cli: &Cli,
    argv: &[String],
    matches: &clap::ArgMatches,
) -> Option<Result<Vec<String>, String>> {
    let Command::Chaos(ChaosArgs {
        command: Some(ChaosCommand::Run(run)),
        ..
    }) = &cli.command
    else {
        return None;
    };
    let dir = run.replay.as_ref()?;
    let run_matches = matches
        .subcommand_matches("chaos")?
        .subcommand_matches("run")?;
    Some(chaos::record::replay_argv(dir, argv, run_matches))
}

/// `pirate titanic --check DIR`: the store's verdict on stdout (text, or one summary line
/// with --json); exit 0 clean, 1 damaged, 2 when there is no readable store or it is in use.
fn check_store(dir: &std::path::Path, output: args::shared::OutputArgs) -> i32 {
    match pirate::roles::titanic::store::Store::check(dir) {
        Ok(check) => {
            let mut text = check.lines(dir).join("\n");
            text.push('\n');
            let code = if check.clean {
                error::EXIT_OK
            } else {
                error::EXIT_FAILED
            };
            Renderer::new(output)
                .document(&text, &Event::Summary(Report::StoreCheck(Box::new(check))));
            code
        }
        Err(e) => {
            eprintln!("error: cannot check the store: {e}");
            error::EXIT_USAGE
        }
    }
}

/// Parses the command line. A usage error is one line on stderr and exit 2, before anything
/// starts (clap's tip, when it has one, joins that line); help and version print as usual.
fn parse_cli() -> (Cli, Invocation) {
    let mut argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut parsed = parse(&argv);
    if let Ok((cli, matches)) = &parsed {
        match replayed(cli, &argv, matches) {
            Some(Ok(recorded)) => {
                argv = recorded;
                parsed = parse(&argv);
            }
            Some(Err(why)) => {
                eprintln!("error: {why}");
                std::process::exit(error::EXIT_USAGE);
            }
            None => {}
        }
    }
    match parsed {
        Ok((cli, matches)) => (cli, Invocation { argv, matches }),
        // Help, version, and `pirate` alone (help on stderr, exit 2): as clap prints them.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            let mut line = one_line(&e.to_string());
            if let Some(hint) = chaos_run_hint(&e) {
                line.push_str(&hint);
            }
            eprintln!("{line}");
            std::process::exit(error::EXIT_USAGE);
        }
    }
}

/// The command line's parser: `Cli`, with every flag that takes a value taking one that looks
/// like a negative number, so that `--retries -1` is refused by the flag's own check
/// ("invalid value '-1' for '--retries <N>'") rather than read as an unknown flag `-1`. Only
/// flags' values: a word that stands alone (`-0`, the client's NUL flag) stays a flag.
fn parser() -> clap::Command {
    fn negatives_are_values(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| {
                if arg.get_action().takes_values() && !arg.is_positional() {
                    arg.allow_negative_numbers(true)
                } else {
                    arg
                }
            })
            .mut_subcommands(negatives_are_values)
    }
    negatives_are_values(<Cli as clap::CommandFactory>::command())
}

/// `pirate chaos --pattern lazy`: the flag is one of `pirate chaos run`'s (bare `pirate chaos`
/// is the fixed demonstration), so the error says where it belongs.
fn chaos_run_hint(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chaos_alone = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "chaos")
        && !args
            .iter()
            .any(|a| a == "run" || a == "proxy" || a == "report");
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = flag
        .split('=')
        .next()
        .unwrap_or(flag)
        .trim_start_matches('-');
    let run = parser()
        .find_subcommand("chaos")?
        .find_subcommand("run")?
        .clone();
    let known = run.get_arguments().any(|a| a.get_long() == Some(name));
    (chaos_alone && known).then(|| {
        format!(" ({flag} is a flag of `pirate chaos run`: try `pirate chaos run {flag} …`)")
    })
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
    let (cli, invocation) = parse_cli();
    let stop = Stop::new();
    install_signal_handler(stop.clone());
    let code = match run(cli, &invocation, stop) {
        Ok(code) => code,
        Err(Error::Interrupted) => error::EXIT_INTERRUPTED,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    // A command still running on a work thread (its loop has stopped, nobody waits for its
    // reply) dies with us, its process group too.
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
