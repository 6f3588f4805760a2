//! `pirate server --freelance`: the Freelance server (10/FLP).
//!
//! One ROUTER socket whose identity is the server's public endpoint string
//! (derived from `--bind` with `*` read as `localhost`, or `--endpoint`), so that clients can
//! address it by the endpoint they connected to. It answers `PING` with `PONG` and a request
//! `[control][body…]` with `[control][reply…]`; malformed messages are counted and dropped.
//! Pings are not requests: they neither count as cycles nor draw faults. Crash and overload
//! faults are those of `pirate server`; an overloaded server answers nothing, pings included,
//! so its clients see it go quiet, as they would a real one.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::event::{Events, Report, ServiceReport};
use crate::faults::{FaultPlan, Faults};
use crate::handler::Handler;
use crate::msg::{Frame, Message};
use crate::proto::flp::{self, ClientMsg, ServerMsg};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::roles::one_at_a_time::{OneAtATime, Request};

/// Everything `pirate server --freelance` needs.
#[derive(Clone, Debug)]
pub struct FreelanceServerConfig {
    /// Where to bind the ROUTER socket (Guide: `tcp://*:5555`).
    pub bind: String,
    /// The public endpoint clients connect to, which is also the socket's identity. Empty:
    /// derived from `bind` by [`public_endpoint`].
    pub endpoint: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl Default for FreelanceServerConfig {
    fn default() -> Self {
        FreelanceServerConfig {
            bind: "tcp://*:5555".into(),
            endpoint: String::new(),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }
}

/// The endpoint clients use to reach a server bound on `bind`: `tcp://*:P` and
/// `tcp://0.0.0.0:P` become `tcp://localhost:P`; anything else is used as it is. Clients must
/// `--connect` to exactly this string, because it is how they address the server.
pub fn public_endpoint(bind: &str) -> String {
    for wildcard in ["tcp://*:", "tcp://0.0.0.0:"] {
        if let Some(port) = bind.strip_prefix(wildcard) {
            return format!("tcp://localhost:{port}");
        }
    }
    bind.to_string()
}

/// The server's identity, checked: ZeroMQ identities are 1 to 255 bytes, and an ephemeral port
/// (`:*`) cannot be known before binding, when the identity must already be set.
pub(super) fn server_identity(config: &FreelanceServerConfig) -> Result<String> {
    let endpoint = if config.endpoint.is_empty() {
        public_endpoint(&config.bind)
    } else {
        config.endpoint.clone()
    };
    if endpoint.ends_with(":*") || endpoint.contains("://*") {
        return Err(Error::Usage(format!(
            "cannot derive a public endpoint from {endpoint} (a Freelance server's endpoint is \
             its identity; give a fixed port, or the address clients use with --endpoint)"
        )));
    }
    if endpoint.is_empty() || endpoint.len() > 255 {
        return Err(Error::Usage(format!(
            "the public endpoint must be 1 to 255 bytes long, got {} (shorten --endpoint)",
            endpoint.len()
        )));
    }
    Ok(endpoint)
}

/// The Freelance server's one socket.
pub(super) const SERVER: Slot = 0;

/// A request for the handler, with what its reply needs: `[client][control][body…]`.
#[derive(Debug, PartialEq)]
pub struct ServerJob {
    pub client: Frame,
    pub control: Frame,
    pub body: Message,
}

impl Request for ServerJob {
    fn body(&self) -> &Message {
        &self.body
    }
}

/// The Freelance server's logic: PING answered at once, one request at a time, each stalled
/// by the fault plan before the handler runs on a work thread.
pub struct FreelanceServer {
    bind: String,
    endpoint: String,
    faults: Faults,
    report: ServiceReport,
    /// The request being served (its reply needs nothing the job does not carry).
    held: OneAtATime<ServerJob, ()>,
}

impl FreelanceServer {
    /// The machine for `config`; a usage error when its endpoint cannot be an identity.
    pub fn new(config: &FreelanceServerConfig) -> Result<Self> {
        let endpoint = server_identity(config)?;
        Ok(FreelanceServer {
            bind: config.bind.clone(),
            faults: Faults::new(config.faults.clone(), config.seed),
            report: ServiceReport {
                endpoint: endpoint.clone(),
                seed: config.seed,
                ..Default::default()
            },
            endpoint,
            held: OneAtATime::default(),
        })
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    /// `[client][control][body…]` arrived: decide this cycle's fault and how long it stalls.
    fn request(
        &mut self,
        job: ServerJob,
        now: Instant,
        out: &mut Outbox<ServerJob>,
        events: &mut Events,
    ) {
        // One request at a time and nothing read meanwhile: while it stalls PINGs wait too,
        // so a stalled (or frozen) server looks dead to its clients, as a real one would.
        self.held.take(
            &mut self.faults,
            &mut self.report,
            job,
            (),
            now,
            out,
            events,
        );
    }
}

impl Machine for FreelanceServer {
    type Job = ServerJob;
    /// The job with the handler's reply as its body.
    type Done = ServerJob;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: SERVER,
            kind: SocketKind::Router,
            name: "server",
            bind: vec![self.bind.clone()],
            connect: Vec::new(),
            // Clients address the server by the endpoint they connected to.
            identity: Some(self.endpoint.as_bytes().to_vec()),
        }]
    }

    fn start(&mut self, _now: Instant, _out: &mut Outbox<ServerJob>, events: &mut Events) {
        self.report =
            ServiceReport::start("freelance server", &self.endpoint, self.report.seed, events);
        if self.endpoint != self.bind {
            events.info(format!(
                "bound {}, clients connect to {}",
                self.bind, self.endpoint
            ));
        }
    }

    fn handle(
        &mut self,
        input: Input<ServerJob>,
        now: Instant,
        out: &mut Outbox<ServerJob>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { slot, msg } => {
                let decoded = flp::split_peer(msg).and_then(|(client, rest)| {
                    flp::decode_client_msg(rest).map(|request| (client, request))
                });
                match decoded {
                    Err(e) => {
                        self.report.invalid += 1;
                        events.invalid("server", e.to_string());
                    }
                    // Pings are not requests: no cycle, no fault.
                    Ok((client, ClientMsg::Ping)) => {
                        out.send(slot, flp::route(client, ServerMsg::Pong.encode()));
                    }
                    Ok((client, ClientMsg::Request { control, body })) => self.request(
                        ServerJob {
                            client,
                            control,
                            body,
                        },
                        now,
                        out,
                        events,
                    ),
                }
            }
            Input::Done(done) => {
                crate::handler::report_failures(&mut self.report, events);
                let Some((served, ())) = self.held.done() else {
                    return;
                };
                let reply = ServerMsg::Reply {
                    control: done.control,
                    body: done.body,
                };
                // A client that went away meanwhile is simply not there: ROUTER drops it.
                out.send(SERVER, flp::route(done.client, reply.encode()));
                served.served_at(now, &mut self.report, events);
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<ServerJob>, _events: &mut Events) {
        self.held.tick(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.held.next_deadline()
    }

    fn wants(&self, _slot: Slot) -> bool {
        self.held.wants()
    }
}

/// Serves until `stop` is raised; returns the counters. Bind failures are errors.
pub fn run_server(
    config: &FreelanceServerConfig,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let mut server = FreelanceServer::new(config)?;
    let handler = config.handler.clone();
    reactor::run(
        &mut server,
        move |job: ServerJob| ServerJob {
            body: handler.handle(job.body),
            ..job
        },
        stop,
        events,
    )?;
    Ok(Report::Service(server.report))
}
