//! Durations in stored and printed JSON as plain seconds (`"warmup_s": 5.0`), never serde's
//! internal `{"secs": 5, "nanos": 0}`: the field names are documented in docs/json.md.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}

/// The same for `Option<Duration>` (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|s| Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Limits {
        #[serde(rename = "warmup_s", with = "super")]
        warmup: Duration,
        #[serde(rename = "duration_s", with = "super::option")]
        duration: Option<Duration>,
    }

    #[test]
    fn durations_are_seconds_and_round_trip() {
        let limits = Limits {
            warmup: Duration::from_millis(2500),
            duration: None,
        };
        let text = serde_json::to_string(&limits).unwrap();
        assert_eq!(text, r#"{"warmup_s":2.5,"duration_s":null}"#);
        assert_eq!(serde_json::from_str::<Limits>(&text).unwrap(), limits);
        assert!(serde_json::from_str::<Limits>(r#"{"warmup_s":-1,"duration_s":null}"#).is_err());
    }
}
