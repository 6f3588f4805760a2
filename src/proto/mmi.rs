//! 8/MMI: the Majordomo Management Interface (service names under `mmi.`).
//!
//! The broker answers every service whose name starts with `mmi.` itself, and disconnects a
//! worker that tries to register such a name. The reply is an ordinary client REPLY (0.1) or
//! FINAL (0.2) whose service frame is the `mmi.*` name.
//!
//! | service | request body | reply body |
//! |---|---|---|
//! | `mmi.service` | a service name | `"200"` if a worker is registered for it now, else `"404"` |
//! | `mmi.status` (ours) | ignored | a JSON object describing the broker |
//! | `mmi.correlate` (ours) | ignored (send one frame: the Guide's brokers overwrite the last body frame with `501`) | `"200"`: this broker carries every client's whole envelope |
//! | any other `mmi.*` | ignored | `"501"` |
//!
//! `mmi.status` is our own extension; the broker builds its JSON, this module only names it.
//!
//! `mmi.correlate` is our other extension: a client asks it before sending requests with a
//! request id in their envelope ([`crate::proto::correlate`]). `"200"` promises that the
//! broker returns every frame a client put before the empty delimiter, unchanged, with the
//! reply to that request and only that request, in whatever order requests complete; any
//! other answer (the Guide's brokers answer `"501"` to every unknown `mmi.*`) or none means
//! the client must send standard requests only, since a foreign broker may misread or even
//! crash on an envelope it does not expect.

use crate::msg::Message;

/// The prefix of every management service name.
pub const PREFIX: &[u8] = b"mmi.";
/// Asks whether a service has a worker registered now.
pub const SERVICE: &[u8] = b"mmi.service";
/// Our extension: the broker's state as a JSON object.
pub const STATUS: &[u8] = b"mmi.status";
/// Our extension: does this broker carry client envelopes (request ids)? `"200"` if so.
pub const CORRELATE: &[u8] = b"mmi.correlate";

/// Reply body: the service has at least one registered worker.
pub const OK: &[u8] = b"200";
/// Reply body: no worker is registered for the service (even if the broker has seen the name).
pub const NOT_FOUND: &[u8] = b"404";
/// Reply body: an `mmi.*` service the broker does not implement.
pub const NOT_IMPLEMENTED: &[u8] = b"501";

/// True when `service` is a management service name. Pass the service frame of a request or
/// a READY, never a socket identity: the Guide's broker checked the identity, so any client
/// could be mistaken for a management request and `mmi.*` requests went to workers.
pub fn is_mmi(service: &[u8]) -> bool {
    service.starts_with(PREFIX)
}

/// A parsed management request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmiRequest {
    /// `mmi.service` asking about the named service.
    Service(Vec<u8>),
    /// `mmi.status`.
    Status,
    /// `mmi.correlate`.
    Correlate,
    /// Any other name (answer [`NOT_IMPLEMENTED`] if it [`is_mmi`]).
    Unknown,
}

/// Parses a request for `service` with the given body. For `mmi.service` the queried name is
/// the first body frame; a request without a body queries the empty name, which no worker can
/// register, so it is answered 404 rather than dropped.
pub fn parse(service: &[u8], body: &Message) -> MmiRequest {
    if service == SERVICE {
        MmiRequest::Service(body.get(0).unwrap_or_default().to_vec())
    } else if service == STATUS {
        MmiRequest::Status
    } else if service == CORRELATE {
        MmiRequest::Correlate
    } else {
        MmiRequest::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::frames as m;

    #[test]
    fn constants_are_the_wire_values() {
        assert_eq!(PREFIX, b"mmi.");
        assert_eq!(SERVICE, b"mmi.service");
        assert_eq!(STATUS, b"mmi.status");
        assert_eq!(CORRELATE, b"mmi.correlate");
        assert_eq!(OK, b"200");
        assert_eq!(NOT_FOUND, b"404");
        assert_eq!(NOT_IMPLEMENTED, b"501");
        assert!(is_mmi(SERVICE) && is_mmi(STATUS));
    }

    #[test]
    fn is_mmi_checks_the_prefix_exactly() {
        assert!(is_mmi(b"mmi."));
        assert!(is_mmi(b"mmi.service"));
        assert!(is_mmi(b"mmi.whatever"));
        assert!(!is_mmi(b"mmi"));
        assert!(!is_mmi(b"mmiservice"));
        assert!(!is_mmi(b"MMI.service"));
        assert!(!is_mmi(b"xmmi.service"));
        assert!(!is_mmi(b"echo"));
        assert!(!is_mmi(b""));
    }

    #[test]
    fn parse_service_takes_the_first_body_frame() {
        assert_eq!(
            parse(b"mmi.service", &m(&[b"echo"])),
            MmiRequest::Service(b"echo".to_vec())
        );
        assert_eq!(
            parse(b"mmi.service", &m(&[b"echo", b"ignored"])),
            MmiRequest::Service(b"echo".to_vec())
        );
    }

    #[test]
    fn parse_service_without_body_queries_the_empty_name() {
        assert_eq!(
            parse(b"mmi.service", &Message::new()),
            MmiRequest::Service(Vec::new())
        );
        assert_eq!(
            parse(b"mmi.service", &m(&[b""])),
            MmiRequest::Service(Vec::new())
        );
    }

    #[test]
    fn parse_status_and_unknown() {
        assert_eq!(parse(b"mmi.status", &Message::new()), MmiRequest::Status);
        assert_eq!(parse(b"mmi.status", &m(&[b"x"])), MmiRequest::Status);
        assert_eq!(parse(b"mmi.correlate", &m(&[b"1"])), MmiRequest::Correlate);
        assert_eq!(parse(b"mmi.correlated", &m(&[b"1"])), MmiRequest::Unknown);
        assert_eq!(parse(b"mmi.nope", &m(&[b"x"])), MmiRequest::Unknown);
        assert_eq!(parse(b"mmi.service.x", &m(&[b"x"])), MmiRequest::Unknown);
        assert_eq!(parse(b"echo", &m(&[b"x"])), MmiRequest::Unknown);
    }
}
