//! The Majordomo library API for Rust programs, without the command line: [`MdpClient`]
//! (the Guide's mdcliapi) and [`MdpWorker`] (mdwrkapi), speaking 7/MDP 0.1 or 18/MDP 0.2 to
//! any broker that implements them.
//!
//! A round trip through a broker, all in one program (the broker here is `pirate`'s own, run
//! on a thread; any MDP broker will do):
//!
//! ```
//! use pirate::majordomo::{MdpClient, MdpWorker, MdpWorkerConfig};
//! use pirate::proto::mdp::Version;
//! use pirate::roles::broker::{self, BrokerConfig};
//! use pirate::reactor::Stop;
//! use pirate::{Events, Message};
//!
//! # fn main() -> pirate::Result<()> {
//! let endpoint = format!("ipc:///tmp/pirate-doctest-{}", std::process::id());
//! let config = BrokerConfig { bind: endpoint.clone(), ..BrokerConfig::default() };
//! std::thread::spawn(move || broker::run(&config, &Stop::new(), &mut Events::discard()));
//!
//! // A worker for the `echo` service, on its own thread.
//! let mut events = Events::discard();
//! let config = MdpWorkerConfig::new(&endpoint, "echo", Version::V1);
//! let mut worker = MdpWorker::connect(config, &mut events)?;
//! std::thread::spawn(move || -> pirate::Result<()> {
//!     let mut events = Events::discard();
//!     loop {
//!         let request = worker.recv(&mut events)?;
//!         worker.reply(&request.client, request.body, &mut events)?;
//!     }
//! });
//!
//! // A client: one request, with the Guide's timeout and retries.
//! let mut client = MdpClient::connect(&endpoint, Version::V1)?;
//! let reply = client.request("echo", Message::from_frames(vec![b"hello".to_vec()]))?;
//! assert_eq!(reply.text(), "hello");
//!
//! // The broker's own services (8/MMI).
//! let found = client.request("mmi.service", Message::from_frames(vec![b"echo".to_vec()]))?;
//! assert_eq!(found.text(), "200");
//! # Ok(())
//! # }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::endpoint::{self, Side};
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::heartbeat::{HeartbeatConfig, Liveness};
use crate::msg::{Frame, Message};
use crate::proto::mdp::{self, Version, WorkerCommand, WorkerMsg};
use crate::reactor::{self, Ended, Stop};
use crate::roles::client::{self, ClientConfig, Correlation, Framing, ReadNext, Request};
use crate::shutdown;
use crate::transport::{self, Socket};

/// A synchronous Majordomo client: one request at a time, with the Lazy Pirate timeout,
/// retries and socket reopen. Each request runs the `pirate client` machine
/// ([`client::Client`]) on a reactor of its own until the reply comes or every attempt has
/// timed out; a fresh socket carries every attempt (standard frames, no request ids), so it
/// works with any MDP broker.
pub struct MdpClient {
    config: ClientConfig,
    version: Version,
    stop: Stop,
}

impl MdpClient {
    /// A client of the broker at `endpoint` (Guide defaults: 2500 ms timeout, 3 attempts).
    /// A malformed endpoint is an error now rather than at the first request.
    pub fn connect(endpoint: &str, version: Version) -> Result<Self> {
        endpoint::check(endpoint, Side::Connect).map_err(Error::Usage)?;
        Ok(MdpClient {
            config: ClientConfig {
                endpoint: endpoint.to_string(),
                ..ClientConfig::default()
            },
            version,
            stop: Stop::new(),
        })
    }

    /// Raising `stop` ends a request that is waiting (with `Error::Interrupted`).
    pub fn with_stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// How long each attempt waits for its reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.config.timeout = timeout;
    }

    /// Attempts per request, the first included.
    pub fn set_retries(&mut self, retries: u32) {
        self.config.retries = retries.max(1);
    }

    /// Sends `body` to `service` and returns the reply (for 0.2, every PARTIAL's frames then
    /// the FINAL's). After every attempt timed out: `Error::Unreachable`.
    pub fn request(&mut self, service: &str, body: Message) -> Result<Message> {
        let config = ClientConfig {
            framing: Framing::Majordomo {
                version: self.version,
                service: service.to_string(),
            },
            ..self.config.clone()
        };
        let mut machine = client::Client::new(&config)
            .with_correlation(Correlation::Socket)
            .keep_replies();
        let request = Mutex::new(Some(Request {
            text: body.text(),
            body,
        }));
        let ended = reactor::run(
            &mut machine,
            move |ReadNext| request.lock().unwrap_or_else(|e| e.into_inner()).take(),
            &self.stop,
            &mut Events::discard(),
        )?;
        if ended == Ended::Stopped {
            return Err(Error::Interrupted);
        }
        machine.take_replies().pop().ok_or_else(|| {
            Error::Unreachable(format!(
                "no reply from service {service} at {} after {} attempts",
                config.endpoint, config.retries
            ))
        })
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    /// A port nobody listens on: every attempt times out.
    const NOBODY: &str = "tcp://127.0.0.1:1";

    fn body() -> Message {
        Message::from_frames([b"hi".to_vec()])
    }

    #[test]
    fn a_malformed_endpoint_is_refused_at_connect() {
        assert!(matches!(
            MdpClient::connect("localhost:5555", Version::V1),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn every_attempt_timing_out_is_unreachable() {
        let mut client = MdpClient::connect(NOBODY, Version::V2).unwrap();
        client.set_timeout(Duration::from_millis(30));
        client.set_retries(2);
        match client.request("echo", body()) {
            Err(Error::Unreachable(why)) => assert!(why.contains("after 2 attempts"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stop_raised_elsewhere_interrupts_a_waiting_request() {
        let stop = Stop::new();
        let mut client = MdpClient::connect(NOBODY, Version::V1)
            .unwrap()
            .with_stop(stop.clone());
        client.set_timeout(Duration::from_secs(60));
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.request();
        });
        assert!(matches!(
            client.request("echo", body()),
            Err(Error::Interrupted)
        ));
        raiser.join().unwrap();
    }
}

/// How an [`MdpWorker`] connects and heartbeats.
#[derive(Clone, Debug)]
pub struct MdpWorkerConfig {
    pub endpoint: String,
    pub service: String,
    pub version: Version,
    /// 7/MDP: 2500 ms, liveness 3.
    pub heartbeat: HeartbeatConfig,
    /// First delay before reconnecting (Guide: 2500 ms); doubles up to `reconnect_max`.
    pub reconnect: Duration,
    pub reconnect_max: Duration,
    /// Identity prefix: each socket is `NAME-N-` and 32 random hex digits (see
    /// [`transport::random_identity`]), readable in logs and unguessable on the wire.
    pub name: String,
    /// More brokers to try in turn after losing one (a Binary Star pair): each reconnect moves
    /// to the next endpoint.
    pub failover: Vec<String>,
}

impl MdpWorkerConfig {
    /// The Guide's defaults for a worker of `service` at `endpoint`.
    pub fn new(endpoint: &str, service: &str, version: Version) -> Self {
        MdpWorkerConfig {
            endpoint: endpoint.to_string(),
            service: service.to_string(),
            version,
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(2500),
                liveness: 3,
            },
            reconnect: Duration::from_millis(2500),
            reconnect_max: Duration::from_secs(32),
            name: format!("w{}", std::process::id()),
            failover: Vec::new(),
        }
    }
}

/// A request received by a worker: reply to `client` with [`MdpWorker::reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdpRequest {
    pub client: Frame,
    pub body: Message,
}

/// A Majordomo worker: registers with READY, heartbeats, and reconnects with a new socket
/// after DISCONNECT or when the broker has been silent for `liveness` intervals.
pub struct MdpWorker {
    config: MdpWorkerConfig,
    ctx: zmq::Context,
    socket: Socket,
    broker: Liveness,
    backoff: Backoff,
    sockets: u64,
    reconnects: u64,
    invalid: u64,
}

impl MdpWorker {
    /// Connects and sends READY.
    pub fn connect(config: MdpWorkerConfig, events: &mut Events) -> Result<Self> {
        let ctx = zmq::Context::new();
        let backoff = Backoff::new(config.reconnect, config.reconnect_max);
        let socket = open_worker(&ctx, &config, 1, events)?;
        Ok(MdpWorker {
            broker: Liveness::new(config.heartbeat, Instant::now()),
            config,
            ctx,
            socket,
            backoff,
            sockets: 1,
            reconnects: 0,
            invalid: 0,
        })
    }

    /// Times the worker reconnected (broker lost or DISCONNECT).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Malformed or unexpected messages dropped so far.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Waits up to `timeout` for a request, heartbeating and reconnecting as needed meanwhile.
    /// Call it often (even while working on a request) to keep the broker's trust.
    pub fn poll(&mut self, timeout: Duration, events: &mut Events) -> Result<Option<MdpRequest>> {
        self.poll_with(timeout, None, events)
    }

    /// Like [`poll`](Self::poll), but also returns (with `None`) as soon as `wake` is readable,
    /// so a caller whose work runs on another thread can be woken when it finishes.
    pub fn poll_with(
        &mut self,
        timeout: Duration,
        wake: Option<&Socket>,
        events: &mut Events,
    ) -> Result<Option<MdpRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            shutdown::check()?;
            let next = deadline
                .min(self.broker.next_send())
                .min(self.broker.expires_at());
            let (readable, woken) = {
                let mut items = vec![self.socket.raw().as_poll_item(zmq::POLLIN)];
                if let Some(w) = wake {
                    items.push(w.raw().as_poll_item(zmq::POLLIN));
                }
                match zmq::poll(&mut items, shutdown::slice_until(next)) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(Error::zmq("poll failed", e)),
                }
                (
                    items[0].is_readable(),
                    items.get(1).is_some_and(|i| i.is_readable()),
                )
            };
            if woken {
                return Ok(None);
            }
            if readable {
                let msg = self.socket.recv(events)?;
                self.broker.heard(Instant::now());
                self.backoff.reset();
                match mdp::decode_worker(msg) {
                    Ok(WorkerMsg {
                        version,
                        command: WorkerCommand::Request { client, body },
                    }) if version == self.config.version => {
                        return Ok(Some(MdpRequest { client, body }));
                    }
                    Ok(WorkerMsg {
                        command: WorkerCommand::Heartbeat,
                        ..
                    }) => {}
                    Ok(WorkerMsg {
                        command: WorkerCommand::Disconnect,
                        ..
                    }) => {
                        events.warn("broker sent DISCONNECT");
                        self.reconnect(events)?;
                    }
                    Ok(other) => {
                        self.invalid += 1;
                        events.invalid("worker", format!("unexpected {:?}", other.command));
                    }
                    Err(e) => {
                        self.invalid += 1;
                        events.invalid("worker", e.to_string());
                    }
                }
            }
            let now = Instant::now();
            if self.broker.is_dead(now) {
                self.reconnect(events)?;
                continue;
            }
            if self.broker.heartbeat_due(now) {
                self.send(WorkerCommand::Heartbeat, events)?;
            }
            if now >= deadline {
                return Ok(None);
            }
        }
    }

    /// Blocks until the next request arrives.
    pub fn recv(&mut self, events: &mut Events) -> Result<MdpRequest> {
        loop {
            if let Some(request) = self.poll(shutdown::POLL_SLICE, events)? {
                return Ok(request);
            }
        }
    }

    /// Sends the (final) reply: REPLY in 0.1, FINAL in 0.2.
    pub fn reply(&mut self, client: &[u8], body: Message, events: &mut Events) -> Result<()> {
        let client = client.to_vec();
        let command = match self.config.version {
            Version::V1 => WorkerCommand::Reply { client, body },
            Version::V2 => WorkerCommand::Final { client, body },
        };
        self.send(command, events)
    }

    /// Sends a PARTIAL reply (0.2 only; in 0.1 there is no such command, so it is an error).
    pub fn partial(&mut self, client: &[u8], body: Message, events: &mut Events) -> Result<()> {
        if self.config.version == Version::V1 {
            return Err(Error::Usage("MDP 0.1 has no PARTIAL replies".into()));
        }
        let client = client.to_vec();
        self.send(WorkerCommand::Partial { client, body }, events)
    }

    fn send(&mut self, command: WorkerCommand, events: &mut Events) -> Result<()> {
        let msg = mdp::encode_worker(WorkerMsg {
            version: self.config.version,
            command,
        });
        self.socket.send(msg, events)?;
        // Traffic is proof of life for the broker: no heartbeat needed for another interval.
        self.broker.sent(Instant::now());
        Ok(())
    }

    /// Closes the socket, waits the back-off delay, and registers again on a new socket.
    fn reconnect(&mut self, events: &mut Events) -> Result<()> {
        let delay = self.backoff.next_delay();
        events.emit(Event::PeerLost {
            delay_ms: delay.as_millis() as u64,
        });
        // Replace the socket first so the old one closes now, not after the wait.
        let placeholder = transport::socket(&self.ctx, zmq::DEALER, "worker", None)?;
        drop(std::mem::replace(&mut self.socket, placeholder));
        shutdown::sleep(delay)?;
        self.sockets += 1;
        self.reconnects += 1;
        self.socket = open_worker(&self.ctx, &self.config, self.sockets, events)?;
        self.broker = Liveness::new(self.config.heartbeat, Instant::now());
        Ok(())
    }
}

/// A DEALER with identity `NAME-N-<random>`, connected, READY sent.
fn open_worker(
    ctx: &zmq::Context,
    config: &MdpWorkerConfig,
    n: u64,
    events: &mut Events,
) -> Result<Socket> {
    let identity = transport::random_identity(&format!("{}-{n}", config.name));
    let socket = transport::socket(ctx, zmq::DEALER, "worker", Some(&identity))?;
    // Socket N talks to endpoint N-1 of the list, round and round: after losing a broker the
    // worker tries the next one.
    let endpoints: Vec<&String> = std::iter::once(&config.endpoint)
        .chain(config.failover.iter())
        .collect();
    let endpoint = endpoints[(n as usize - 1) % endpoints.len()];
    socket.connect(endpoint)?;
    let ready = mdp::encode_worker(WorkerMsg {
        version: config.version,
        command: WorkerCommand::Ready {
            service: config.service.as_bytes().to_vec(),
        },
    });
    socket.send(ready, events)?;
    events.info(format!(
        "worker {} ready for service {}",
        String::from_utf8_lossy(&identity),
        config.service
    ));
    Ok(socket)
}
