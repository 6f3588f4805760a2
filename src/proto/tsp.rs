//! 9/TSP (the Titanic Service Protocol)'s vocabulary: the three service names, the status
//! codes and the request's [`Uuid`], the words a Titanic and its clients share on the wire.
//! Titanic's answers from its store are the role's (`roles::titanic`); the UUID is here, below
//! the event layer, because `pirate titanic --check` reports UUIDs too.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

/// The three services Titanic registers for.
pub const REQUEST: &str = "titanic.request";
pub const REPLY: &str = "titanic.reply";
pub const CLOSE: &str = "titanic.close";

/// 9/TSP statuses.
pub const OK: &[u8] = b"200";
pub const PENDING: &[u8] = b"300";
pub const UNKNOWN: &[u8] = b"400";
pub const ERROR: &[u8] = b"500";

/// A request's identity: 128 random bits, written as 32 lowercase hex digits on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A fresh UUID from the operating system's generator. Deliberately not from the seeded
    /// generator: a run replayed with the same `--seed` on the same directory would otherwise
    /// draw UUIDs that are already in the store.
    pub fn random() -> Self {
        Uuid(rand::random::<u128>().to_be_bytes())
    }

    /// Parses 32 hex digits (either case). Anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.chunks(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            bytes[i] = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Some(Uuid(bytes))
    }
}

/// As on the wire: 32 lowercase hex digits.
impl Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In JSON a UUID is a string of 32 lowercase hex digits.
impl JsonSchema for Uuid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Uuid".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "A TSP request's UUID: 32 lowercase hex digits."
        })
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}
