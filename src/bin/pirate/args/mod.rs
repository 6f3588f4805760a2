//! The flag groups several subcommands share, each declared once and flattened into every
//! subcommand that takes it ([`shared`]: output, limits, heartbeats, faults, …; [`auth`]: the
//! security flags), and the value parsers every flag uses ([`values`]). A command's own flags
//! live beside what runs it: the roles' in `cli`, `pirate chaos`'s in `chaos::args` and
//! `chaos::proxy`, `pirate bench`'s in `bench`.

pub mod auth;
pub mod shared;
pub mod values;
