//! `pirate server --freelance` and `pirate client --freelance`: the Freelance pattern (10/FLP),
//! reliable request-reply with no broker. Frame formats are in [`crate::proto::flp`].
//! The server ([`server`]) and the client ([`client`]) each open with their design.

mod client;
mod server;
#[cfg(test)]
mod tests;

pub use client::{
    dedupe, run_client, FreelanceClient, FreelanceClientConfig, NextRequest, ServerState,
    ServerTable, UNROUTABLE_RETRY,
};
pub use server::{public_endpoint, run_server, FreelanceServer, FreelanceServerConfig, ServerJob};
