//! Byte sizes as Ignite writes them: `"4GB"`, `"800MB"`, `"512"` (bytes).
//!
//! Units are binary (1 KB = 1024 bytes), as in Ignite's `datasize` package, so a manifest
//! written for Ignite means the same number of bytes here.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KB: u64 = 1 << 10;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;
const TB: u64 = 1 << 40;
const PB: u64 = 1 << 50;
const EB: u64 = 1 << 60;

const UNITS: [(u64, &str); 6] = [
    (EB, "EB"),
    (PB, "PB"),
    (TB, "TB"),
    (GB, "GB"),
    (MB, "MB"),
    (KB, "KB"),
];

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(u64);

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (examples: \"4GB\", \"512MB\", \"1048576\")")]
pub struct SizeError {
    input: String,
    reason: &'static str,
}

impl Size {
    pub const ZERO: Size = Size(0);

    pub const fn from_bytes(bytes: u64) -> Self {
        Size(bytes)
    }

    pub const fn from_mib(mib: u64) -> Self {
        Size(mib * MB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Whole MiB, rounded down (what a VMM takes for memory).
    pub const fn mib(self) -> u64 {
        self.0 / MB
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The canonical manifest form: the largest unit that divides the size exactly.
    pub fn to_manifest_string(self) -> String {
        if self.0 == 0 {
            return "0B".to_string();
        }
        for (unit, name) in UNITS {
            if self.0.is_multiple_of(unit) {
                return format!("{}{}", self.0 / unit, name);
            }
        }
        format!("{}B", self.0)
    }
}

/// Human-readable form, as Ignite prints it in tables: `4.0 GB`, `512.0 MB`, `0 B`.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, name) in UNITS {
            if self.0 > unit {
                return write!(f, "{:.1} {}", self.0 as f64 / unit as f64, name);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SizeError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        if number.is_empty() {
            return Err(err("it does not start with a number"));
        }
        let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" | "byte" | "bytes" => 1,
            "k" | "kb" | "kib" => KB,
            "m" | "mb" | "mib" => MB,
            "g" | "gb" | "gib" => GB,
            "t" | "tb" | "tib" => TB,
            "p" | "pb" | "pib" => PB,
            "e" | "eb" | "eib" => EB,
            _ => return Err(err("unknown unit; use B, KB, MB, GB, TB, PB or EB")),
        };
        let bytes = if let Some((whole, frac)) = number.split_once('.') {
            if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
                return Err(err("malformed number"));
            }
            let value: f64 = number.parse().map_err(|_| err("malformed number"))?;
            let bytes = value * multiplier as f64;
            if !bytes.is_finite() || bytes >= u64::MAX as f64 {
                return Err(err("too large"));
            }
            bytes.round() as u64
        } else {
            let value: u64 = number.parse().map_err(|_| err("too large"))?;
            value
                .checked_mul(multiplier)
                .ok_or_else(|| err("too large"))?
        };
        Ok(Size(bytes))
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_manifest_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"4GB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ignite_forms() {
        assert_eq!("4GB".parse::<Size>().unwrap().bytes(), 4 * GB);
        assert_eq!("800MB".parse::<Size>().unwrap().bytes(), 800 * MB);
        assert_eq!("512".parse::<Size>().unwrap().bytes(), 512);
        assert_eq!("1500mb".parse::<Size>().unwrap().bytes(), 1500 * MB);
        assert_eq!("2 GiB".parse::<Size>().unwrap().bytes(), 2 * GB);
        assert_eq!("1.5GB".parse::<Size>().unwrap().bytes(), 3 * GB / 2);
        assert_eq!("0B".parse::<Size>().unwrap(), Size::ZERO);
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "GB",
            "4XB",
            "-1",
            "1.2.3GB",
            "99999999999999999999",
            "20000000EB",
        ] {
            let err = bad.parse::<Size>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn manifest_form_is_exact_and_round_trips() {
        for (bytes, text) in [
            (0, "0B"),
            (4 * GB, "4GB"),
            (1500 * MB, "1500MB"),
            (1000, "1000B"),
        ] {
            let size = Size(bytes);
            assert_eq!(size.to_manifest_string(), text);
            assert_eq!(text.parse::<Size>().unwrap(), size);
        }
    }

    #[test]
    fn display_matches_ignite_tables() {
        assert_eq!(Size(0).to_string(), "0 B");
        assert_eq!(Size(4 * GB).to_string(), "4.0 GB");
        assert_eq!(Size(512 * MB).to_string(), "512.0 MB");
        assert_eq!(Size(1024).to_string(), "1024 B");
    }

    #[test]
    fn json_accepts_strings_and_bare_numbers() {
        assert_eq!(
            serde_json::from_str::<Size>("\"3GB\"").unwrap(),
            Size(3 * GB)
        );
        assert_eq!(serde_json::from_str::<Size>("4096").unwrap(), Size(4096));
        assert!(serde_json::from_str::<Size>("-5").is_err());
        assert_eq!(serde_json::to_string(&Size(3 * GB)).unwrap(), "\"3GB\"");
    }
}
