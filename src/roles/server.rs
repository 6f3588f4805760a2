//! `pirate server`: the Lazy Pirate server. A REP socket that answers each request with the
//! handler's reply, injecting crashes, overloads and freezes as the fault plan says (acted on
//! by [`Faults::inject`]: a freeze is reported as a freeze, though on a REP socket, which
//! neither reads nor heartbeats while it holds a request, it looks like an overload).

use std::time::Instant;

use crate::error::Result;
use crate::event::{Events, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::handler::Handler;
use crate::shutdown;
use crate::transport::{self, Socket};

/// Everything `pirate server` needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to bind the REP socket (Guide: `tcp://*:5555`).
    pub bind: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "tcp://*:5555".into(),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }
}

/// Serves until stopped by a signal; returns the counters. Bind failures are errors.
pub fn run(config: &ServerConfig, events: &mut Events) -> Result<Report> {
    let ctx = zmq::Context::new();
    let socket = transport::socket(&ctx, zmq::REP, "server", None)?;
    socket.bind(&config.bind)?;
    let mut faults = Faults::new(config.faults.clone(), config.seed);
    let mut report = ServiceReport::start("server", &config.bind, config.seed, events);
    let ended = serve(config, &socket, &mut faults, &mut report, events);
    report.finish(ended)
}

/// Answers requests one at a time until a stop request.
fn serve(
    config: &ServerConfig,
    socket: &Socket,
    faults: &mut Faults,
    report: &mut ServiceReport,
    events: &mut Events,
) -> Result<()> {
    while !shutdown::requested() {
        if !socket.poll_in(shutdown::POLL_SLICE.as_millis() as i64)? {
            continue;
        }
        let request = socket.recv(events)?;
        report.requests += 1;
        let started = Instant::now();
        let injected = faults.inject(report, OnCrash::Now, events)?;
        // Nothing to keep alive while REP holds a request: an overload is a longer sleep.
        shutdown::sleep(config.faults.work + injected.extra_work)?;
        let serving = Serving::new(injected.cycle, &request, started);
        socket.send(config.handler.handle(request), events)?;
        serving.served(report, events);
    }
    Ok(())
}
