//! [`MdpClient`], a synchronous Majordomo client (the Guide's mdcliapi): what Titanic's
//! clients ([`super::TitanicClient`]) speak 9/TSP through, and what [`crate::majordomo`] offers
//! Rust programs. It runs the `pirate client` machine on a reactor of its own per request.

use std::sync::Mutex;
use std::time::Duration;

use crate::endpoint::{self, Side};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::feed::Request;
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::reactor::{self, Ended, Stop};
use crate::roles::client::{self, ClientConfig, Correlation, Framing, ReadNext};

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
