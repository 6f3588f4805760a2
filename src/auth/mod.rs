//! Authentication and encryption: ZAP (RFC 27) for the sockets a role binds, PLAIN
//! (RFC 24) or CURVE (RFC 26, encrypted) credentials for the sockets it connects.
//!
//! The policy is process-wide: one `pirate` process runs one role, and
//! the same flags secure every socket it binds or connects, so no role has to carry it.
//! [`transport`](crate::transport) calls [`on_bind`] and [`on_connect`] before each bind and
//! connect; with no policy installed (library use, in-process tests) they do nothing.
//! `inproc://` sockets are never secured: they do not leave the process.

pub mod credentials;
pub mod zap;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use credentials::{Allow, Key, KeyPair};

use crate::error::{Error, Result};
use crate::reactor::Stop;

pub use zap::{on_refusal, refused, Refusal};

/// The ZAP domain of every secured bind (ZAP is only asked for NULL peers when one is set).
pub const ZAP_DOMAIN: &str = "pirate";

/// What a process requires of peers on the sockets it binds, and presents on those it
/// connects.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub server: Option<ServerPolicy>,
    pub client: Option<ClientPolicy>,
}

/// Who may connect to a bound socket.
#[derive(Clone, Debug)]
pub struct ServerPolicy {
    pub mechanism: ServerMechanism,
    /// Addresses peers may come from; empty: any.
    pub allow: Vec<Allow>,
}

/// The security mechanism a bound socket requires.
#[derive(Clone, Debug)]
pub enum ServerMechanism {
    /// None (only `--allow` applies).
    Null,
    /// PLAIN: these users, with these passwords (sent in clear).
    Plain(BTreeMap<String, String>),
    /// CURVE with this server key pair; `clients` empty lets any client key in.
    Curve {
        pair: KeyPair,
        clients: BTreeSet<Key>,
    },
}

/// The credentials a connecting socket presents.
#[derive(Clone, Debug)]
pub enum ClientPolicy {
    Plain {
        user: String,
        password: String,
    },
    /// CURVE to the server with public key `server`, as `pair`.
    Curve {
        server: Key,
        pair: KeyPair,
    },
}

impl Security {
    /// One line per side for the log, so an operator sees what is enforced (keys public only).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(server) = &self.server {
            let mut line = match &server.mechanism {
                ServerMechanism::Null => "security: no credentials required".to_string(),
                ServerMechanism::Plain(users) => {
                    format!("security: peers log in with PLAIN ({} users)", users.len())
                }
                ServerMechanism::Curve { pair, clients } => format!(
                    "security: CURVE, server public key {}, {}",
                    credentials::z85(&pair.public),
                    match clients.len() {
                        0 => "any client key".to_string(),
                        n => format!("{n} client keys allowed"),
                    }
                ),
            };
            if !server.allow.is_empty() {
                line.push_str(&format!("; peers only from {} --allow", server.allow.len()));
            }
            lines.push(line);
        }
        match &self.client {
            Some(ClientPolicy::Plain { user, .. }) => {
                lines.push(format!("security: logging in with PLAIN as {user:?}"))
            }
            Some(ClientPolicy::Curve { server, pair }) => lines.push(format!(
                "security: CURVE to server key {}, as public key {}",
                credentials::z85(server),
                credentials::z85(&pair.public)
            )),
            None => {}
        }
        lines
    }
}

static POLICY: OnceLock<Security> = OnceLock::new();

/// Installs the process's policy (once, before any socket is bound or connected) and, when
/// it secures binds, starts the ZAP handler, which stops when `stop` is raised.
pub fn install(security: Security, stop: &Stop) -> Result<()> {
    let curve = matches!(
        &security.server,
        Some(ServerPolicy {
            mechanism: ServerMechanism::Curve { .. },
            ..
        })
    ) || matches!(security.client, Some(ClientPolicy::Curve { .. }));
    if curve && zmq::has("curve") != Some(true) {
        return Err(Error::Internal(
            "this build of libzmq has no CURVE support".into(),
        ));
    }
    if let Some(server) = &security.server {
        zap::start(server.clone(), stop)?;
    }
    POLICY
        .set(security)
        .map_err(|_| Error::Internal("the security policy was installed twice".into()))?;
    crate::transport::set_security(Box::new(Applied))
}

/// The installed policy, as the socket layer calls it before each bind and connect.
struct Applied;

impl crate::transport::Security for Applied {
    fn before_bind(&self, ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> Result<()> {
        on_bind(ctx, socket, endpoint)
    }

    fn before_connect(&self, socket: &zmq::Socket, endpoint: &str) -> Result<()> {
        on_connect(socket, endpoint)
    }
}

fn policy() -> Option<&'static Security> {
    POLICY.get()
}

fn secured(endpoint: &str) -> bool {
    !endpoint.starts_with("inproc://")
}

fn option(what: &str, result: zmq::Result<()>) -> Result<()> {
    result.map_err(|e| Error::zmq(&format!("cannot set {what}"), e))
}

/// Before `socket` (made in `ctx`) binds `endpoint`: require the policy's mechanism, route
/// its peers through a ZAP handler for `ctx`, and count the handshakes that fail.
pub fn on_bind(ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    let Some(server) = policy().and_then(|p| p.server.as_ref()) else {
        return Ok(());
    };
    if !secured(endpoint) {
        return Ok(());
    }
    option("the ZAP domain", socket.set_zap_domain(ZAP_DOMAIN))?;
    match &server.mechanism {
        ServerMechanism::Null => {}
        ServerMechanism::Plain(_) => option("PLAIN", socket.set_plain_server(true))?,
        ServerMechanism::Curve { pair, .. } => {
            option("CURVE", socket.set_curve_server(true))?;
            option(
                "the CURVE secret key",
                socket.set_curve_secretkey(&pair.secret),
            )?;
        }
    }
    zap::watch(ctx, socket, endpoint)
}

/// Before `socket` connects to `endpoint`: present the policy's credentials.
pub fn on_connect(socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    let Some(client) = policy().and_then(|p| p.client.as_ref()) else {
        return Ok(());
    };
    if !secured(endpoint) {
        return Ok(());
    }
    match client {
        ClientPolicy::Plain { user, password } => {
            option("the PLAIN user", socket.set_plain_username(Some(user)))?;
            option(
                "the PLAIN password",
                socket.set_plain_password(Some(password)),
            )
        }
        ClientPolicy::Curve { server, pair } => {
            option("the CURVE server key", socket.set_curve_serverkey(server))?;
            option(
                "the CURVE public key",
                socket.set_curve_publickey(&pair.public),
            )?;
            option(
                "the CURVE secret key",
                socket.set_curve_secretkey(&pair.secret),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_libzmq_has_curve() {
        assert_eq!(zmq::has("curve"), Some(true));
    }
}
