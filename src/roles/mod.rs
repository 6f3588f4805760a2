//! The roles, one module each, all of the same shape: a `Config` in, `run(config, events)`
//! emitting [`Event`](crate::event::Event)s, a [`Report`](crate::event::Report) out.

pub mod broker;
pub mod bstar_server;
pub mod client;
pub mod freelance;
pub mod one_at_a_time;
pub mod queue;
pub mod server;
pub mod titanic;
pub mod worker;
