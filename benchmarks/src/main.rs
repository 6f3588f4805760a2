//! `pirate-benchmarks`: the benchmark of `pirate` in the repository (run it with `benchmarks/run`).
//! One binary, several parts, each run as a process of its own so that every system measured
//! pays for its processes and sockets alike:
//! - `table`: the orchestrator: starts every shape in turn, takes medians, prints the table;
//! - `raw-echo-server` / `raw-echo-client`: the floor, a bare ZeroMQ DEALER/ROUTER echo;
//! - `nats-responder` / `nats-requester`: the same shapes through nats-server (async-nats);
//! - `idle-peers`: idle workers and client connections beside a run, for the flatness rows;
//! - `nats-load`: nats-server's counterpart of `mdp_load`, for the broker-alone table.
//!
//! `pirate` itself is driven by `pirate bench` against `pirate broker` and
//! `pirate worker --protocol mdp` processes: the load generator users get.

mod args;
mod idle;
mod latency;
mod nats;
mod raw;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(part) = argv.next() else {
        eprintln!("usage: pirate-benchmarks table|raw-echo-server|raw-echo-client|nats-responder|nats-requester|nats-load|idle-peers [--flag value]...");
        return ExitCode::from(2);
    };
    let flags = match args::Flags::parse(argv) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match part.as_str() {
        "table" => table::run(&flags),
        "raw-echo-server" => raw::server(&flags),
        "raw-echo-client" => raw::client(&flags),
        "nats-responder" => nats::responder(&flags),
        "nats-requester" => nats::requester(&flags),
        "nats-load" => nats::load(&flags),
        "idle-peers" => idle::run(&flags),
        other => Err(format!("unknown part {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
