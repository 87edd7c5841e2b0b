//! Byte sizes as users type them (`512M`, `2G`, `1.5GiB`, `4096`) and as we print them.

use std::fmt;
use std::str::FromStr;

/// A size in bytes. Parses `K`, `M`, `G`, `T` suffixes as powers of 1024 (with or without a
/// trailing `B`/`iB`), and plain numbers as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// A size string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size '{input}': expected a number with an optional K, M, G or T suffix, e.g. 512M or 2G")]
pub struct ParseSizeError {
    /// The text that was given.
    pub input: String,
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<ByteSize, ParseSizeError> {
        let err = || ParseSizeError {
            input: s.to_string(),
        };
        let t = s.trim();
        let upper = t.to_ascii_uppercase();
        let number_end = upper
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(upper.len());
        let (number, unit) = upper.split_at(number_end);
        let unit = unit.trim();
        let scale: u64 = match unit {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => return Err(err()),
        };
        if number.is_empty() {
            return Err(err());
        }
        let bytes = if number.contains('.') {
            let value: f64 = number.parse().map_err(|_| err())?;
            let bytes = value * scale as f64;
            if !bytes.is_finite() || bytes >= u64::MAX as f64 {
                return Err(err());
            }
            bytes.round() as u64
        } else {
            let value: u64 = number.parse().map_err(|_| err())?;
            value.checked_mul(scale).ok_or_else(err)?
        };
        if bytes == 0 {
            return Err(err());
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.2} {}", UNITS[unit])
        }
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0 => Ok(ByteSize(n)),
            Raw::Number(n) => Err(serde::de::Error::custom(ParseSizeError {
                input: n.to_string(),
            })),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_sizes() {
        assert_eq!("512M".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("2G".parse::<ByteSize>().unwrap().0, 2 << 30);
        assert_eq!("2GiB".parse::<ByteSize>().unwrap().0, 2 << 30);
        assert_eq!("1.5g".parse::<ByteSize>().unwrap().0, 3 << 29);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert_eq!("64kb".parse::<ByteSize>().unwrap().0, 64 << 10);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "G",
            "12X",
            "-1G",
            "0",
            "1.2.3M",
            "99999999999999999999T",
            "1e3",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn displays_binary_units() {
        assert_eq!(ByteSize(512).to_string(), "512 B");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.50 GiB");
    }
}
