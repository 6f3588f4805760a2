//! The Majordomo library API for Rust programs, without the command line: [`MdpClient`]
//! (the Guide's mdcliapi) and [`serve`] (mdwrkapi), speaking 7/MDP 0.1 or 18/MDP 0.2 to
//! any broker that implements them.
//!
//! A round trip through a broker, all in one program (the broker here is `pirate`'s own, run
//! on a thread; any MDP broker will do):
//!
//! ```
//! use pirate::majordomo::{self, MdpClient, MdpWorkerConfig};
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
//! // A worker for the `echo` service, on its own thread, until `stop` is raised.
//! let config = MdpWorkerConfig::new(&endpoint, "echo", Version::V1);
//! let stop = Stop::new();
//! let worker_stop = stop.clone();
//! let worker = std::thread::spawn(move || {
//!     majordomo::serve(&config, |body| body, &worker_stop, &mut Events::discard())
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
//!
//! stop.request();
//! worker.join().expect("the worker thread")?;
//! # Ok(())
//! # }
//! ```

use std::sync::Mutex;
use std::time::Duration;

use crate::endpoint::{self, Side};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::event::Report;
use crate::feed::Request;
use crate::handler::Handler;
use crate::heartbeat::HeartbeatConfig;
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::reactor::{self, Ended, Stop};
use crate::roles::client::{self, ClientConfig, Correlation, Framing, ReadNext};
use crate::roles::worker::{self, PirateProtocol, WorkerConfig};

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
            move |ReadNext| {
                let mut request = request.lock().unwrap_or_else(|e| e.into_inner());
                request.take().into_iter().collect()
            },
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

impl MdpWorkerConfig {
    /// The worker role's configuration for this one, answering with `handler`.
    fn worker(&self, handler: Handler) -> WorkerConfig {
        WorkerConfig {
            endpoint: self.endpoint.clone(),
            failover: self.failover.clone(),
            protocol: PirateProtocol::Majordomo(self.version),
            service: self.service.clone(),
            heartbeat: self.heartbeat,
            reconnect: self.reconnect,
            reconnect_max: self.reconnect_max,
            name: self.name.clone(),
            handler,
            ..WorkerConfig::default()
        }
    }
}

/// Serves `config.service` until `stop` is raised, answering every request with `handle` (run
/// on a work thread, one request at a time): the Guide's mdwrkapi loop, as the same worker
/// machine that `pirate worker --protocol mdp` runs on the reactor. It registers with READY,
/// heartbeats, and reconnects with a new socket after DISCONNECT or when the broker has been
/// silent for `liveness` intervals. Returns the worker's counters.
pub fn serve(
    config: &MdpWorkerConfig,
    handle: impl Fn(Message) -> Message + Send + Sync + 'static,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    worker::run(&config.worker(Handler::func(handle)), stop, events)
}
