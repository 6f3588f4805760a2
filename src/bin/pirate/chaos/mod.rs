//! `pirate chaos`, the binary's part: its flags ([`args`], and [`proxy`] for `pirate chaos
//! proxy`), the orchestrator that runs a whole topology ([`run`]), the network of hosts it
//! may give it ([`net`]), what a run records of how it was started ([`record`]) and the files
//! it leaves ([`report`]). The pure checker, the report's vocabulary and the proxy's machine
//! are the library's (`pirate::chaos`).

pub mod args;
pub mod net;
pub mod proxy;
pub mod record;
pub mod report;
pub mod run;
