//! What the security flags name, parsed: CURVE key pairs in Z85, PLAIN password files,
//! client public-key allow-lists, and the IP/CIDR allow-list. Pure, no sockets.
//!
//! Key file (what `pirate generate keys` prints; lines starting with `#` are comments):
//! ```text
//! public: rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
//! secret: JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6
//! client: Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID   (a server's allow-list, repeatable)
//! ```
//! The same pair as JSON (`pirate --json generate keys`) is accepted too.
//! Password file: one `user:password` a line (the password may hold `:`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use crate::error::{Error, Result};

/// A CURVE key, 32 bytes (40 characters in Z85).
pub type Key = [u8; 32];

/// A CURVE key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub public: Key,
    pub secret: Key,
}

impl std::fmt::Debug for KeyPair {
    // Never print a secret key, not even in a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair {{ public: {} }}", z85(&self.public))
    }
}

impl KeyPair {
    /// A fresh pair from libsodium's generator.
    pub fn generate() -> Result<KeyPair> {
        let pair = zmq::CurveKeyPair::new().map_err(|e| {
            Error::Internal(format!(
                "cannot make a CURVE key pair (is CURVE built in?): {e}"
            ))
        })?;
        Ok(KeyPair {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// The pair as `pirate generate keys` prints it.
    pub fn to_text(&self) -> String {
        format!(
            "public: {}\nsecret: {}\n",
            z85(&self.public),
            z85(&self.secret)
        )
    }

    /// The pair as JSON (`pirate --json generate keys`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "public": z85(&self.public), "secret": z85(&self.secret) })
    }
}

/// A key file: its pair and, for a server, the client keys it lets in (empty: any client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    pub pair: KeyPair,
    pub clients: BTreeSet<Key>,
}

/// Encodes a key in Z85.
pub fn z85(key: &Key) -> String {
    zmq::z85_encode(key).expect("32 bytes is a multiple of 4")
}

/// Decodes a Z85 key (40 characters) with an error that says which key was wrong.
pub fn parse_key(text: &str, what: &str) -> std::result::Result<Key, String> {
    let text = text.trim();
    if text.len() != 40 {
        return Err(format!(
            "{what} is not a CURVE key: expected 40 Z85 characters, got {}",
            text.len()
        ));
    }
    let bytes = zmq::z85_decode(text).map_err(|_| format!("{what} is not a CURVE key: not Z85"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{what} is not a CURVE key"))
}

/// The public key that belongs to `secret` (Curve25519 scalar multiplication of the base).
fn public_of(secret: &Key) -> Key {
    extern "C" {
        // libzmq's own, linked through the zmq crate (it has no safe wrapper for it).
        fn zmq_curve_public(
            z85_public: *mut libc::c_char,
            z85_secret: *const libc::c_char,
        ) -> libc::c_int;
    }
    let secret = std::ffi::CString::new(z85(secret)).expect("Z85 has no NUL");
    let mut public = [0u8; 41];
    // SAFETY: libzmq reads a NUL-terminated 40-character Z85 secret and writes 40 characters
    // and a NUL into the 41-byte buffer.
    let rc = unsafe { zmq_curve_public(public.as_mut_ptr().cast(), secret.as_ptr()) };
    assert_eq!(rc, 0, "zmq_curve_public failed: CURVE is not built in");
    let text = std::str::from_utf8(&public[..40]).expect("Z85 is ASCII");
    parse_key(text, "derived key").expect("libzmq writes a valid key")
}

/// Parses a key file (see the module docs). `path` only names it in errors.
pub fn parse_key_file(text: &str, path: &str) -> std::result::Result<KeyFile, String> {
    let (mut public, mut secret, mut clients) = (None, None, BTreeSet::new());
    if text.trim_start().starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{path}: not a key file: {e}"))?;
        let field = |name: &str| json[name].as_str().map(str::to_string);
        public = field("public");
        secret = field("secret");
        for client in json["clients"].as_array().into_iter().flatten() {
            let key = client.as_str().unwrap_or_default();
            clients.insert(parse_key(key, &format!("{path}: a client key"))?);
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            // Whole-line comments only: `#` is a Z85 character.
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{path}:{}", n + 1);
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!(
                    "{at}: expected `public: KEY`, `secret: KEY` or `client: KEY`"
                ));
            };
            match name.trim() {
                "public" => public = Some(value.trim().to_string()),
                "secret" => secret = Some(value.trim().to_string()),
                "client" => {
                    clients.insert(parse_key(value, &format!("{at}: the client key"))?);
                }
                other => return Err(format!("{at}: unknown field `{other}`")),
            }
        }
    }
    let public = public.ok_or_else(|| format!("{path}: no `public:` key"))?;
    let secret = secret.ok_or_else(|| format!("{path}: no `secret:` key"))?;
    let pair = KeyPair {
        public: parse_key(&public, &format!("{path}: the public key"))?,
        secret: parse_key(&secret, &format!("{path}: the secret key"))?,
    };
    if public_of(&pair.secret) != pair.public {
        return Err(format!(
            "{path}: the public key does not belong to the secret key"
        ));
    }
    Ok(KeyFile { pair, clients })
}

/// Parses a password file: `user:password` lines, `#` comments and blank lines skipped.
pub fn parse_password_file(
    text: &str,
    path: &str,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (user, password) =
            parse_user_password(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        if users.insert(user.clone(), password).is_some() {
            return Err(format!("{path}:{}: user `{user}` is listed twice", n + 1));
        }
    }
    if users.is_empty() {
        return Err(format!(
            "{path}: no `user:password` line: nobody could log in"
        ));
    }
    Ok(users)
}

/// Parses `USER:PASSWORD` (ZMTP PLAIN carries each in at most 255 bytes).
pub fn parse_user_password(text: &str) -> std::result::Result<(String, String), String> {
    let Some((user, password)) = text.split_once(':') else {
        return Err("expected USER:PASSWORD".into());
    };
    if user.is_empty() {
        return Err("the user name is empty (expected USER:PASSWORD)".into());
    }
    if user.len() > 255 || password.len() > 255 {
        return Err("PLAIN user names and passwords are at most 255 bytes".into());
    }
    Ok((user.to_string(), password.to_string()))
}

/// An address peers may connect from: one IP, or a CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    net: IpAddr,
    prefix: u8,
}

impl Allow {
    /// Parses `10.0.0.7`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub fn parse(text: &str) -> std::result::Result<Allow, String> {
        let bad = || format!("invalid address '{text}' (expected an IP or CIDR, e.g. 10.0.0.0/8)");
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let net: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        Ok(Allow { net, prefix })
    }

    /// Whether `address` (as ZAP gives it: an IP, IPv4-mapped IPv6 included) is inside.
    pub fn contains(&self, address: &str) -> bool {
        let Ok(ip) = address.parse::<IpAddr>() else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xFFu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Reads a file named by a flag, with the flag in the error.
pub fn read_flag_file(path: &Path, flag: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_reads_back_from_its_text_and_its_json() {
        let pair = KeyPair::generate().unwrap();
        let text = pair.to_text();
        assert!(text.starts_with("public: ") && text.contains("\nsecret: "));
        assert_eq!(parse_key_file(&text, "f").unwrap().pair, pair);
        let json = pair.to_json().to_string();
        assert_eq!(parse_key_file(&json, "f").unwrap().pair, pair);
    }

    #[test]
    fn a_key_file_takes_an_allow_list_and_comments() {
        let (server, client) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let text = format!(
            "# the broker\n{}\n# alice\nclient: {}\n",
            server.to_text(),
            z85(&client.public)
        );
        let file = parse_key_file(&text, "f").unwrap();
        assert_eq!(file.clients, BTreeSet::from([client.public]));
    }

    #[test]
    fn bad_key_files_say_what_is_wrong_and_where() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let mixed = format!("public: {}\nsecret: {}\n", z85(&a.public), z85(&b.secret));
        assert!(parse_key_file(&mixed, "k")
            .unwrap_err()
            .contains("does not belong"));
        assert!(parse_key_file("public: short\nsecret: short\n", "k")
            .unwrap_err()
            .contains("k: the public key is not a CURVE key"));
        assert!(parse_key_file("colour: red\n", "k")
            .unwrap_err()
            .contains("k:1: unknown field"));
        assert!(
            parse_key_file(&format!("public: {}\n", z85(&a.public)), "k")
                .unwrap_err()
                .contains("no `secret:`")
        );
    }

    #[test]
    fn password_files_split_at_the_first_colon() {
        let users = parse_password_file("# staff\nalice:s3:cr:et\n\nbob:\n", "p").unwrap();
        assert_eq!(users["alice"], "s3:cr:et");
        assert_eq!(users["bob"], "");
        assert!(parse_password_file("alice\n", "p")
            .unwrap_err()
            .starts_with("p:1:"));
        assert!(parse_password_file("a:1\na:2\n", "p")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_password_file("# nobody\n", "p").is_err());
    }

    #[test]
    fn allow_matches_ips_and_cidr_blocks() {
        let net = Allow::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3"));
        assert!(!net.contains("10.2.0.1"));
        assert!(net.contains("::ffff:10.1.0.9"), "IPv4-mapped IPv6");
        let one = Allow::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1") && !one.contains("127.0.0.2"));
        assert!(Allow::parse("10.0.0.0/12")
            .unwrap()
            .contains("10.15.255.255"));
        assert!(!Allow::parse("10.0.0.0/12").unwrap().contains("10.16.0.0"));
        assert!(Allow::parse("fd00::/8").unwrap().contains("fd12::1"));
        assert!(!Allow::parse("::1").unwrap().contains("127.0.0.1"));
        assert!(
            !Allow::parse("0.0.0.0/0").unwrap().contains(""),
            "ipc peers have no IP"
        );
        assert!(Allow::parse("0.0.0.0/0").unwrap().contains("192.0.2.1"));
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0/8",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(Allow::parse(bad).is_err(), "{bad}");
        }
    }
}
