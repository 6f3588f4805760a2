//! `pirate server`: the Lazy Pirate server. A REP socket that answers each request with the
//! handler's reply, injecting crashes and overloads as the fault plan says.

use std::time::Instant;

use crate::error::Result;
use crate::event::{Event, Events, FaultKind, Report, ServiceReport};
use crate::faults::{crash_now, Fault, FaultPlan, Faults};
use crate::handler::Handler;
use crate::shutdown;
use crate::stats::millis;
use crate::transport;

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
    let mut report = ServiceReport {
        endpoint: config.bind.clone(),
        seed: config.seed,
        ..Default::default()
    };
    events.emit(Event::Started {
        role: "server".into(),
        endpoint: config.bind.clone(),
        seed: Some(config.seed),
    });
    while !shutdown::requested() {
        if !socket.poll_in(shutdown::POLL_SLICE.as_millis() as i64)? {
            continue;
        }
        let request = socket.recv(events)?;
        report.requests += 1;
        let started = Instant::now();
        let cycle = faults.cycles() + 1;
        match faults.next_cycle() {
            Some(Fault::Crash) => {
                events.emit(Event::Fault {
                    kind: FaultKind::Crash,
                    cycle,
                    duration_ms: None,
                });
                events.info("simulating a crash");
                crash_now();
            }
            Some(Fault::Overload(d)) | Some(Fault::Freeze(d)) => {
                report.overloads += 1;
                events.emit(Event::Fault {
                    kind: FaultKind::Overload,
                    cycle,
                    duration_ms: Some(d.as_millis() as u64),
                });
                events.info("simulating CPU overload");
                if shutdown::sleep(d).is_err() {
                    break;
                }
            }
            None => {}
        }
        if shutdown::sleep(config.faults.work).is_err() {
            break;
        }
        let bytes = request.iter().map(<[u8]>::len).sum();
        let preview = request.preview();
        let reply = config.handler.handle(request);
        socket.send(reply, events)?;
        report.replied += 1;
        events.emit(Event::Served {
            cycle,
            request: preview,
            bytes,
            work_ms: millis(started.elapsed()),
        });
    }
    Ok(Report::Service(report))
}
