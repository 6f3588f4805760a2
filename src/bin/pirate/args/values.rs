//! Value parsers for clap (`value_parser = …`): durations, probabilities, sizes, endpoints.
//! A module of their own so that every argument module (`cli`, `chaos::proxy`, …) can use
//! them without importing each other.

use std::time::Duration;

use pirate::endpoint::{self, Side};

/// Parses an endpoint to bind: `tcp://HOST:PORT` (HOST may be `*`) or `ipc://PATH`.
pub fn parse_bind_endpoint(text: &str) -> Result<String, String> {
    endpoint::check(text, Side::Bind).map(|()| text.to_string())
}

/// Parses an endpoint to connect to: `tcp://HOST:PORT` or `ipc://PATH`.
pub fn parse_connect_endpoint(text: &str) -> Result<String, String> {
    endpoint::check(text, Side::Connect).map(|()| text.to_string())
}

/// Parses a humantime duration (`2500ms`, `1s`, `1m30s`).
/// A default duration as the help shows it: whole seconds as `30s`, anything else in
/// milliseconds (`2500ms`), so that a default taken from a library config reads as the help
/// always wrote it.
pub fn default_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && !d.is_zero() {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A default size as the help shows it: in the largest binary unit it is a whole number of
/// (`16MiB`, `1GiB`), else in bytes.
pub fn default_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration '{text}': {e} (expected e.g. 2500ms, 1s, 1m30s)"))
}

/// Parses a duration that must be longer than zero (a zero limit would fire at once).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("invalid duration '{text}': must be longer than 0")),
        d => Ok(d),
    }
}

/// A size in bytes: `1000`, `64k`, `16MiB`, `1.5G`. `k`/`M`/`G` (also `kB`, `MB`, `GB`) are
/// powers of 1000, `KiB`/`MiB`/`GiB` powers of 1024; a trailing `B` is allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use e.g. 1000, 64k, 16MiB)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text:?} (use e.g. 1000, 64k, 16MiB)"))?;
    let bytes = value * scale as f64;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size out of range: {text:?}"));
    }
    Ok(bytes.round() as u64)
}

/// A `--max-message` size: at least 256 bytes, so protocol frames and identities still fit.
pub fn parse_message_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < 256 {
        return Err(format!(
            "{text:?} is too small (at least 256 bytes: protocol frames must fit)"
        ));
    }
    Ok(bytes)
}

/// Parses a probability: `0.2` or `20%`, between 0 and 1.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid probability '{text}' (expected e.g. 0.2 or 20%)"))?;
    let p = value / scale;
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return Err(format!(
            "probability '{text}' is not between 0 and 1 (0% and 100%)"
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_take_fractions_and_percentages() {
        assert_eq!(parse_probability("0.2"), Ok(0.2));
        assert_eq!(parse_probability("20%"), Ok(0.2));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("-1%").is_err());
        assert!(parse_probability("often").is_err());
    }

    #[test]
    fn zero_durations_that_cannot_work_are_refused() {
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            parse_connect_endpoint("tcp://localhost:5555").as_deref(),
            Ok("tcp://localhost:5555")
        );
        assert!(parse_connect_endpoint("tcp://*:5555").is_err());
        assert!(parse_bind_endpoint("tcp://*:5555").is_ok());
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("2 KiB"), Ok(2048));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_message_size("100").is_err());
        assert_eq!(parse_message_size("256"), Ok(256));
    }

    #[test]
    fn durations_are_humantime() {
        assert_eq!(parse_duration("2500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("2x").unwrap_err().contains("2x"));
    }
}
