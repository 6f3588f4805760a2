//! The security flags, declared once: [`ServerAuthArgs`] on every role that binds,
//! [`ClientAuthArgs`] on every role that connects (both on Binary Star nodes and the chaos
//! proxy), and their conversion into [`pirate::auth::Security`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use pirate::auth::credentials::{
    parse_key, parse_key_file, parse_password_file, parse_user_password, read_flag_file, Allow,
    Key, KeyPair,
};
use pirate::auth::{ClientPolicy, ServerMechanism, ServerPolicy};
use pirate::error::{Error, Result};

/// Who may connect to the sockets this role binds (ZAP, RFC 27).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Security (binding)")]
pub struct ServerAuthArgs {
    /// Require PLAIN log-ins (RFC 24) checked against FILE's `user:password` lines; PLAIN
    /// sends the password in clear, so use it on trusted networks only
    #[arg(long, value_name = "FILE", conflicts_with = "auth_curve")]
    pub auth_plain: Option<PathBuf>,
    /// Require CURVE (RFC 26: encrypted, this server authenticated) with FILE's key pair, as
    /// `pirate generate keys` prints it; `client: KEY` lines in FILE let only those clients in
    #[arg(long, value_name = "FILE")]
    pub auth_curve: Option<PathBuf>,
    /// Let peers in only from this IP address or CIDR block (repeatable); others are refused
    #[arg(long, value_name = "ADDRESS", value_parser = Allow::parse)]
    pub allow: Vec<Allow>,
}

/// The credentials this role presents on the sockets it connects.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Security (connecting, or to the Binary Star peer)")]
pub struct ClientAuthArgs {
    /// Log in with PLAIN (RFC 24) as USER:PASSWORD (visible to other local users in the
    /// process list)
    // A password, like a Z85 key (1 in 85), may begin with `-`: it is still this flag's value.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_user_password, conflicts_with = "curve_server", allow_hyphen_values = true)]
    pub plain: Option<(String, String)>,
    /// Speak CURVE (RFC 26, encrypted) to servers with this public key (Z85, 40 characters)
    #[arg(long, value_name = "PUBLIC_KEY", value_parser = parse_public_key, allow_hyphen_values = true)]
    pub curve_server: Option<Key>,
    /// With --curve-server: this role's key pair, from FILE as `pirate generate keys` prints
    /// it [default: a new pair each run]
    #[arg(long, value_name = "FILE", requires = "curve_server")]
    pub curve_keys: Option<PathBuf>,
}

fn parse_public_key(text: &str) -> std::result::Result<Key, String> {
    parse_key(text, "the key")
}

impl ServerAuthArgs {
    /// The policy for binds, or `None` when no flag asks for one.
    pub fn policy(&self) -> Result<Option<ServerPolicy>> {
        let mechanism = if let Some(path) = &self.auth_plain {
            let text = read_flag_file(path, "--auth-plain")?;
            let users = parse_password_file(&text, &path.display().to_string())
                .map_err(|e| Error::Usage(format!("--auth-plain {e}")))?;
            ServerMechanism::Plain(users)
        } else if let Some(path) = &self.auth_curve {
            let file = key_file(path, "--auth-curve")?;
            ServerMechanism::Curve {
                pair: file.pair,
                clients: file.clients,
            }
        } else if !self.allow.is_empty() {
            ServerMechanism::Null
        } else {
            return Ok(None);
        };
        Ok(Some(ServerPolicy {
            mechanism,
            allow: self.allow.clone(),
        }))
    }
}

impl ClientAuthArgs {
    /// True when a flag was given.
    pub fn given(&self) -> bool {
        self.plain.is_some() || self.curve_server.is_some()
    }

    /// The credentials for connects, or `None` when no flag asks for any.
    pub fn policy(&self) -> Result<Option<ClientPolicy>> {
        if let Some((user, password)) = &self.plain {
            return Ok(Some(ClientPolicy::Plain {
                user: user.clone(),
                password: password.clone(),
            }));
        }
        let Some(server) = self.curve_server else {
            return Ok(None);
        };
        let pair = match &self.curve_keys {
            Some(path) => {
                let file = key_file(path, "--curve-keys")?;
                if !file.clients.is_empty() {
                    return Err(Error::Usage(format!(
                        "--curve-keys {}: `client:` lines belong in a server's --auth-curve file",
                        path.display()
                    )));
                }
                file.pair
            }
            None => KeyPair::generate()?,
        };
        Ok(Some(ClientPolicy::Curve { server, pair }))
    }
}

fn key_file(path: &std::path::Path, flag: &str) -> Result<pirate::auth::credentials::KeyFile> {
    let text = read_flag_file(path, flag)?;
    parse_key_file(&text, &path.display().to_string())
        .map_err(|e| Error::Usage(format!("{flag} {e}")))
}

/// How `pirate chaos run` secures its whole topology.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecurityArg {
    /// No authentication
    #[default]
    None,
    /// PLAIN: every binder requires one generated user and password, every connector logs in
    Plain,
    /// CURVE: every binder has one generated server key, every connector encrypts to it
    Curve,
}

/// The flags that secure a `pirate chaos run` topology as `security` asks, with the
/// credentials they name made now: (flags for every binder, flags for every connector).
/// Files go into `dir` (created, private to this user).
pub fn topology_flags(
    security: SecurityArg,
    dir: &std::path::Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let write = |name: &str, text: &str| -> Result<String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?
            .write_all(text.as_bytes())?;
        Ok(path.display().to_string())
    };
    Ok(match security {
        SecurityArg::None => (Vec::new(), Vec::new()),
        SecurityArg::Plain => {
            let password = format!("{:032x}", rand::random::<u128>());
            let file = write("passwords", &format!("chaos:{password}\n"))?;
            (
                vec!["--auth-plain".into(), file],
                vec!["--plain".into(), format!("chaos:{password}")],
            )
        }
        SecurityArg::Curve => {
            let pair = KeyPair::generate()?;
            let file = write("server.keys", &pair.to_text())?;
            let public = pirate::auth::credentials::z85(&pair.public);
            (
                vec!["--auth-curve".into(), file],
                vec!["--curve-server".into(), public],
            )
        }
    })
}
