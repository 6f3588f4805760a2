//! The Majordomo library API for Rust programs, without the command line: [`MdpClient`]
//! (the Guide's mdcliapi) and [`serve`] (mdwrkapi), speaking 7/MDP 0.1 or 18/MDP 0.2 to
//! any broker that implements them. This module only gathers them for library users: the
//! client is Titanic's ([`crate::roles::titanic`] speaks 9/TSP through it) and the worker is
//! `pirate worker`'s ([`crate::roles::worker`]).
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

pub use crate::roles::titanic::MdpClient;
pub use crate::roles::worker::{serve, MdpWorkerConfig};
