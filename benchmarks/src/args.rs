//! `--flag value` pairs, all this benchmark's parts need (no command-line library to build).

use std::collections::HashMap;
use std::time::Duration;

pub struct Flags(HashMap<String, String>);

impl Flags {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut flags = HashMap::new();
        while let Some(flag) = argv.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("expected --flag, got {flag:?}"));
            };
            let value = argv.next().ok_or(format!("{flag} needs a value"))?;
            flags.insert(name.to_string(), value);
        }
        Ok(Flags(flags))
    }

    pub fn text(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or(format!("--{name} is required"))
    }

    pub fn text_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.0.get(name).map_or(default, String::as_str)
    }

    pub fn number(&self, name: &str, default: usize) -> Result<usize, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}")),
        }
    }

    /// A duration in seconds or milliseconds: `2s`, `500ms`, `1.5s`.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, String> {
        let Some(v) = self.0.get(name) else {
            return Ok(default);
        };
        let bad = || format!("--{name}: not a duration (2s, 500ms): {v:?}");
        if let Some(ms) = v.strip_suffix("ms") {
            return ms.parse().map(Duration::from_millis).map_err(|_| bad());
        }
        let secs: f64 = v
            .strip_suffix('s')
            .unwrap_or(v)
            .parse()
            .map_err(|_| bad())?;
        Duration::try_from_secs_f64(secs).map_err(|_| bad())
    }
}
