//! One error type for the whole crate, and the process exit code each kind maps to.
//!
//! [`EXIT_STATUSES`] is the one table of exit codes: the help's EXIT STATUS (and so the man
//! pages), `docs/output.md` and the README are tested against it.

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run finished but something was lost, wrong or abandoned.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the command line was wrong.
pub const EXIT_USAGE: i32 = 2;
/// A client gave up, and the broker had said (`mmi.service` 404) that no worker serves the
/// service: the broker is up, the service is not (sysexits' EX_NOHOST).
pub const EXIT_NO_SERVICE: i32 = 68;
/// Exit code: a peer was unreachable for good (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// Exit code: the peer speaks another protocol (sysexits EX_PROTOCOL): a Majordomo broker
/// answered a bare client, or a Majordomo client's question came back echoed.
pub const EXIT_PROTOCOL: i32 = 76;
/// Exit code: a server refused our PLAIN or CURVE login (sysexits EX_NOPERM), told by the
/// socket monitor (see [`crate::handshake`]).
pub const EXIT_AUTH: i32 = 77;
/// Exit code: a bug or an unexpected failure inside `pirate` (sysexits EX_SOFTWARE).
pub const EXIT_INTERNAL: i32 = 70;
/// Exit code: stopped by Ctrl-C or SIGTERM (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code: stdout was closed under us (`pirate client … | head -1`): the status of a
/// program killed by SIGPIPE (128 + 13), which `set -o pipefail` scripts already expect of
/// `seq`, `yes` or `cat` in that place. Nothing is printed.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// Every exit status, with what it means in a few words.
pub const EXIT_STATUSES: [(i32, &str); 10] = [
    (EXIT_OK, "success"),
    (
        EXIT_FAILED,
        "the run finished but something was lost, wrong or abandoned",
    ),
    (EXIT_USAGE, "usage error, before anything starts"),
    (
        EXIT_NO_SERVICE,
        "a broker is up but no worker serves the service",
    ),
    (
        EXIT_UNAVAILABLE,
        "a peer stayed unreachable after every retry",
    ),
    (EXIT_INTERNAL, "internal error"),
    (EXIT_PROTOCOL, "the peer answered in another protocol"),
    (EXIT_AUTH, "authentication refused by the peer"),
    (EXIT_INTERRUPTED, "interrupted by Ctrl-C or SIGTERM"),
    (
        EXIT_STDOUT_CLOSED,
        "stdout was closed: the run stopped, quietly",
    ),
];

/// Everything that can stop a role. Each variant's message is one line that says what went
/// wrong and, where we can tell, what to do about it.
#[derive(Debug)]
pub enum Error {
    /// The configuration cannot work (bad endpoint, contradictory flags).
    Usage(String),
    /// A socket could not be bound; carries the endpoint and the reason.
    Bind { endpoint: String, reason: String },
    /// A peer stayed unreachable after every retry.
    Unreachable(String),
    /// Stopped by a signal before finishing.
    Interrupted,
    /// Anything else: ZeroMQ or I/O failures we did not expect.
    Internal(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The process exit code this error maps to (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Bind { .. } => EXIT_USAGE,
            Error::Unreachable(_) => EXIT_UNAVAILABLE,
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::Internal(_) => EXIT_INTERNAL,
        }
    }

    /// Wraps an unexpected ZeroMQ failure with what we were doing at the time.
    pub fn zmq(doing: &str, err: zmq::Error) -> Error {
        Error::Internal(format!("{doing}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Unreachable(m) | Error::Internal(m) => f.write_str(m),
            Error::Bind { endpoint, reason } => write!(f, "cannot bind {endpoint}: {reason}"),
            Error::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("i/o error: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_design() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let bind = Error::Bind {
            endpoint: "tcp://*:5555".into(),
            reason: "address already in use".into(),
        };
        assert_eq!(bind.exit_code(), 2);
        assert_eq!(
            bind.to_string(),
            "cannot bind tcp://*:5555: address already in use"
        );
        assert_eq!(Error::Unreachable("x".into()).exit_code(), 69);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert_eq!(Error::Internal("x".into()).exit_code(), 70);
    }
}
