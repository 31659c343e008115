//! Calendar arithmetic for trends: hour and local-day bucket boundaries, time zones, DST.

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

use super::{QueryError, TimeRange, MAX_TREND_POINTS};
use crate::store::{floor_to, HOUR_MS};

pub(crate) fn parse_time_zone(name: &str) -> Result<Tz, QueryError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| QueryError::UnknownTimeZone(name.to_owned()))
}

pub(crate) fn hour_boundaries(range: TimeRange) -> Result<Vec<i64>, QueryError> {
    let count = ((range.end_ms - range.start_ms) / HOUR_MS) as usize;
    if count > MAX_TREND_POINTS {
        return Err(QueryError::TooManyPoints {
            requested: count,
            max: MAX_TREND_POINTS,
        });
    }
    Ok((0..=count as i64)
        .map(|i| range.start_ms + i * HOUR_MS)
        .collect())
}

/// The first instant of a local calendar day. Midnight can fall in a DST gap (some zones switch
/// at 00:00), in which case the day starts at the first local time that exists.
pub(crate) fn local_day_start(tz: Tz, date: NaiveDate) -> Option<i64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    (0..=24 * 4).find_map(|quarter| {
        let local = midnight.checked_add_signed(chrono::Duration::minutes(15 * quarter))?;
        tz.from_local_datetime(&local)
            .earliest()
            .map(|t| t.timestamp_millis())
    })
}

/// Local-midnight boundaries covering `range`. Buckets are summed from hour buckets, so a
/// boundary that is not on a UTC hour (zones such as Asia/Kolkata, +05:30) is snapped down to
/// the start of its UTC hour. Whole-hour zones, and their 23- and 25-hour DST days, are exact.
pub(crate) fn day_boundaries(tz: Tz, range: TimeRange) -> Result<Vec<i64>, QueryError> {
    let day_of = |ms: i64| -> Result<NaiveDate, QueryError> {
        tz.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.date_naive())
            .ok_or(QueryError::OutsideCalendar)
    };
    let mut date = day_of(range.start_ms)?;
    let mut boundaries = Vec::new();
    loop {
        let start = local_day_start(tz, date)
            .map(|ms| floor_to(ms, HOUR_MS))
            .ok_or(QueryError::OutsideCalendar)?;
        boundaries.push(start);
        if start >= range.end_ms {
            break;
        }
        if boundaries.len() > MAX_TREND_POINTS {
            return Err(QueryError::TooManyPoints {
                requested: boundaries.len(),
                max: MAX_TREND_POINTS,
            });
        }
        date = date.succ_opt().ok_or(QueryError::OutsideCalendar)?;
    }
    Ok(boundaries)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::DAY_MS;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    fn days(zone: &str, start_ms: i64, end_ms: i64) -> Vec<i64> {
        let tz: Tz = zone.parse().unwrap();
        day_boundaries(tz, TimeRange { start_ms, end_ms }).unwrap()
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        let spring = days("Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 30, 0));
        assert_eq!(spring[0], utc(2026, 3, 27, 23), "local midnight in CET");
        assert_eq!(spring[2] - spring[1], 23 * HOUR_MS);
        let autumn = days("Europe/Berlin", utc(2026, 10, 25, 0), utc(2026, 10, 26, 0));
        assert_eq!(autumn[1] - autumn[0], 25 * HOUR_MS);
    }

    #[test]
    fn half_hour_zones_snap_to_the_utc_hour() {
        let kolkata = days("Asia/Kolkata", utc(2026, 1, 10, 0), utc(2026, 1, 11, 0));
        // Local midnight of Jan 10 is 18:30 UTC on Jan 9, snapped to 18:00.
        assert_eq!(kolkata[0], utc(2026, 1, 9, 18));
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_first_valid_time() {
        // America/Santiago springs forward at 00:00 local on 2026-09-06.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = local_day_start(tz, date).unwrap();
        let local = tz.timestamp_millis_opt(start).single().unwrap();
        assert_eq!(local.date_naive(), date);
        assert_eq!(
            local.time(),
            chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_time_zone_is_an_invalid_argument() {
        assert!(matches!(
            parse_time_zone("Mars/Olympus"),
            Err(QueryError::UnknownTimeZone(_))
        ));
        assert_eq!(parse_time_zone("").unwrap(), Tz::UTC);
    }

    proptest! {
        #[test]
        fn day_boundaries_are_increasing_local_days(
            zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago", "Pacific/Chatham"]),
            start in 1_600_000_000_000_i64..1_900_000_000_000_i64,
            days in 1_i64..60,
        ) {
            let tz: Tz = zone.parse().unwrap();
            let range = TimeRange { start_ms: start, end_ms: start + days * DAY_MS };
            let bounds = day_boundaries(tz, range).unwrap();
            prop_assert!(bounds[0] <= start);
            prop_assert!(*bounds.last().unwrap() >= range.end_ms);
            for w in bounds.windows(2) {
                let len = w[1] - w[0];
                // 23 to 25 hours, plus up to one hour of snapping for sub-hour offsets.
                prop_assert!((22 * HOUR_MS..=26 * HOUR_MS).contains(&len), "{} {}", zone, len);
                prop_assert_eq!(w[0].rem_euclid(HOUR_MS), 0);
            }
        }
    }
}
