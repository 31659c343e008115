//! `google.protobuf.Timestamp` with the proto3 JSON form the mapping asks for: RFC 3339 in UTC
//! with a `Z`, and 0, 3, 6 or 9 fractional digits. pbjson-types writes `+00:00`, which parsers
//! accept but clients that compare or sort the strings do not.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    fn to_datetime(self) -> Option<DateTime<Utc>> {
        let nanos = u32::try_from(self.nanos).ok()?;
        DateTime::from_timestamp(self.seconds, nanos)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Timestamp {
            seconds: at.timestamp(),
            nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = self.to_datetime().ok_or_else(|| {
            serde::ser::Error::custom("timestamp out of range or with invalid nanos")
        })?;
        serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        let at = DateTime::parse_from_rfc3339(text).map_err(E::custom)?;
        Ok(Timestamp::from(at.with_timezone(&Utc)))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(seconds: i64, nanos: i32) -> String {
        serde_json::to_string(&Timestamp { seconds, nanos }).expect("serializes")
    }

    /// The mapping: "Z"-normalized, with 0, 3, 6 or 9 fractional digits.
    fn follows_the_mapping(text: &str) -> bool {
        let Some(body) = text.strip_prefix('"').and_then(|t| t.strip_suffix("Z\"")) else {
            return false;
        };
        let fraction = body.split_once('.').map_or("", |(_, f)| f);
        [0, 3, 6, 9].contains(&fraction.len()) && fraction.bytes().all(|b| b.is_ascii_digit())
    }

    #[test]
    fn written_in_utc_with_z_and_whole_groups_of_digits() {
        assert_eq!(json(1_795_802_400, 0), "\"2026-11-27T18:00:00Z\"");
        assert_eq!(
            json(1_795_802_400, 120_000_000),
            "\"2026-11-27T18:00:00.120Z\""
        );
        assert_eq!(
            json(1_795_802_400, 1_000),
            "\"2026-11-27T18:00:00.000001Z\""
        );
        assert_eq!(json(1_795_802_400, 7), "\"2026-11-27T18:00:00.000000007Z\"");
        for (seconds, nanos) in [(0, 0), (-1, 999_999_999), (253_402_300_799, 5_000_000)] {
            let text = json(seconds, nanos);
            assert!(follows_the_mapping(&text), "{text}");
        }
    }

    #[test]
    fn read_with_any_offset_and_written_back_in_utc() {
        let read: Timestamp =
            serde_json::from_str("\"2026-11-27T19:00:00.5+01:00\"").expect("parses");
        assert_eq!(
            read,
            Timestamp {
                seconds: 1_795_802_400,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            json(read.seconds, read.nanos),
            "\"2026-11-27T18:00:00.500Z\""
        );
    }

    #[test]
    fn an_impossible_timestamp_is_an_error_not_a_panic() {
        let broken = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(serde_json::to_string(&broken).is_err());
    }
}
