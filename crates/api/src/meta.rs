//! What every object carries: its kind and API version, and its metadata (name, uid,
//! creation time, labels, annotations).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The API group of every object.
pub const API_GROUP: &str = "ignite.weave.works";
/// The version written by this implementation.
pub const API_VERSION: &str = "ignite.weave.works/v1alpha4";
/// Versions read unchanged: v1alpha3 objects have the same shape for every kind but
/// `Configuration`, which v1alpha4 only extended.
pub const READABLE_API_VERSIONS: [&str; 2] = [API_VERSION, "ignite.weave.works/v1alpha3"];

/// The kinds of object this API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Vm,
    Image,
    Kernel,
    Configuration,
    Snapshot,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Vm => "VM",
            Kind::Image => "Image",
            Kind::Kernel => "Kernel",
            Kind::Configuration => "Configuration",
            Kind::Snapshot => "Snapshot",
        }
    }

    /// Parses a kind as users type it on the command line (`vm`, `VM`, `image`, ...).
    pub fn from_user_input(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "vm" | "vms" => Some(Kind::Vm),
            "image" | "images" => Some(Kind::Image),
            "kernel" | "kernels" => Some(Kind::Kernel),
            "configuration" => Some(Kind::Configuration),
            "snapshot" | "snapshots" => Some(Kind::Snapshot),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 16-hex-digit object identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

/// Why a uid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid uid {0:?}: a uid is 16 lowercase hexadecimal digits, e.g. 599615df99804ae8")]
pub struct UidError(pub String);

impl Uid {
    pub const LEN: usize = 16;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Makes a uid from 8 random bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Uid {
        Uid(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl FromStr for Uid {
    type Err = UidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == Uid::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Uid(s.to_string()))
        } else {
            Err(UidError(s.to_string()))
        }
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Uid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A point in time, written as RFC 3339 in UTC with whole seconds (`2000-01-01T01:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub DateTime<Utc>);

impl Time {
    /// Now, to the second (the precision objects are written with).
    pub fn now() -> Time {
        Time(Utc::now().trunc_subsecs(0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Time(t.with_timezone(&Utc)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid time {s:?}: {e}; use RFC 3339, e.g. 2000-01-01T01:00:00Z"
                ))
            })
    }
}

/// `metadata` of every object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Serde helper for `apiVersion`: only versions this implementation reads are accepted.
pub(crate) mod api_version {
    use super::{API_VERSION, READABLE_API_VERSIONS};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(_: &(), serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(API_VERSION)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
        let v = String::deserialize(deserializer)?;
        if READABLE_API_VERSIONS.contains(&v.as_str()) {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "unsupported apiVersion {v:?}: use {API_VERSION}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_accepts_only_16_hex() {
        assert!("599615df99804ae8".parse::<Uid>().is_ok());
        for bad in [
            "",
            "599615df99804ae",
            "599615df99804ae8a",
            "599615DF99804AE8",
            "zz9615df99804ae8",
        ] {
            assert!(bad.parse::<Uid>().is_err(), "{bad}");
        }
        assert_eq!(
            Uid::from_bytes([0, 1, 2, 0xab, 4, 5, 6, 0xff]).as_str(),
            "000102ab040506ff"
        );
    }

    #[test]
    fn time_is_rfc3339_seconds_utc() {
        let t: Time = serde_json::from_str("\"2000-01-01T02:00:00+01:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2000-01-01T01:00:00Z\""
        );
        assert!(serde_json::from_str::<Time>("\"yesterday\"").is_err());
    }

    #[test]
    fn kinds_from_user_input() {
        assert_eq!(Kind::from_user_input("VM"), Some(Kind::Vm));
        assert_eq!(Kind::from_user_input("Kernel"), Some(Kind::Kernel));
        assert_eq!(Kind::from_user_input("pod"), None);
    }
}
