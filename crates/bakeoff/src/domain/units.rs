//! Units every stored sample carries, so a number is never read without knowing what it measures.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    TokensPerSecond,
    Milliseconds,
    Seconds,
    Tokens,
    Bytes,
    Ratio,
    Percent,
    Count,
    Joules,
    Watts,
    TokensPerJoule,
    JoulesPerToken,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::TokensPerSecond => "t/s",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Tokens => "tokens",
            Unit::Bytes => "bytes",
            Unit::Ratio => "ratio",
            Unit::Percent => "%",
            Unit::Count => "count",
            Unit::Joules => "J",
            Unit::Watts => "W",
            Unit::TokensPerJoule => "tok/J",
            Unit::JoulesPerToken => "J/tok",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Format a byte count with binary prefixes (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Parse a size such as `8G`, `512MiB`, `1.5GB` or `1048576` into bytes (binary multiples).
/// A token count the way people write context sizes: 4096 → `4K`, 131072 → `128K`, 1000 → `1000`.
pub fn human_count(n: u64) -> String {
    if n >= 1024 && n % 1024 == 0 {
        format!("{}K", n / 1024)
    } else {
        n.to_string()
    }
}

pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * multiplier) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_text() {
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5 GB"), Some(3 << 29));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
