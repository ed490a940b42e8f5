//! Chart series: which stored resolution to read for a time range, and how
//! wide each bucket is, so a chart gets at most the points it asked for and
//! a long range never reads raw rows.

use super::UnixMs;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Where a series is read from, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
    Day,
}

impl Resolution {
    /// The rollup resolutions, each built from the one before it.
    pub const ROLLUPS: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Width of one stored bucket (1 ms for raw readings).
    pub fn ms(self) -> i64 {
        match self {
            Resolution::Raw => 1,
            Resolution::Minute => MINUTE_MS,
            Resolution::Hour => HOUR_MS,
            Resolution::Day => DAY_MS,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }

    /// The start of the stored bucket holding `t`.
    pub fn floor(self, t: UnixMs) -> UnixMs {
        t - t.rem_euclid(self.ms())
    }
}

/// How to read a series: from `resolution`, in buckets of `bucket_ms`
/// starting at `start` (aligned to the resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPlan {
    pub resolution: Resolution,
    pub start: UnixMs,
    pub end: UnixMs,
    pub bucket_ms: i64,
}

/// One bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    pub start: UnixMs,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

/// Chooses the coarsest resolution that still gives about `max_points`
/// buckets over `[start, end)`: raw up to 2 hours, minutes up to 3 days,
/// hours up to 90 days, days beyond.
pub fn plan(start: UnixMs, end: UnixMs, max_points: u32) -> SeriesPlan {
    let range = (end - start).max(1);
    let resolution = if range <= 2 * HOUR_MS {
        Resolution::Raw
    } else if range <= 3 * DAY_MS {
        Resolution::Minute
    } else if range <= 90 * DAY_MS {
        Resolution::Hour
    } else {
        Resolution::Day
    };
    let res = resolution.ms();
    let wanted = (range + i64::from(max_points.max(1)) - 1) / i64::from(max_points.max(1));
    // Whole multiples of the resolution; raw buckets in whole seconds.
    let unit = if resolution == Resolution::Raw {
        1_000
    } else {
        res
    };
    let bucket_ms = ((wanted + unit - 1) / unit).max(1) * unit;
    SeriesPlan {
        resolution,
        start: resolution.floor(start),
        end,
        bucket_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ranges_read_raw_rows_in_whole_seconds() {
        let p = plan(1_000_000, 1_000_000 + HOUR_MS, 300);
        assert_eq!(p.resolution, Resolution::Raw);
        assert_eq!(p.bucket_ms, 12_000);
        assert_eq!(p.start, 1_000_000);
    }

    #[test]
    fn a_day_reads_minutes_a_week_hours_a_year_days() {
        let day = plan(0, DAY_MS, 300);
        assert_eq!(
            (day.resolution, day.bucket_ms),
            (Resolution::Minute, 5 * MINUTE_MS)
        );
        let week = plan(0, 7 * DAY_MS, 300);
        assert_eq!(
            (week.resolution, week.bucket_ms),
            (Resolution::Hour, HOUR_MS)
        );
        let year = plan(0, 365 * DAY_MS, 300);
        assert_eq!(
            (year.resolution, year.bucket_ms),
            (Resolution::Day, 2 * DAY_MS)
        );
    }

    #[test]
    fn never_more_buckets_than_asked_and_aligned_to_the_resolution() {
        for (start, end, points) in [
            (123_456, 123_456 + 26 * HOUR_MS, 100),
            (7, 7 + 40 * DAY_MS, 2_000),
            (1_700_000_000_000, 1_700_000_000_000 + 5_000, 3),
        ] {
            let p = plan(start, end, points);
            assert!(
                (end - p.start) / p.bucket_ms <= i64::from(points) + 1,
                "{p:?}"
            );
            assert_eq!(p.start % p.resolution.ms(), 0);
            assert!(p.start <= start);
        }
    }

    #[test]
    fn floor_finds_the_bucket_start() {
        assert_eq!(Resolution::Minute.floor(125_000), 120_000);
        assert_eq!(Resolution::Hour.floor(HOUR_MS + 1), HOUR_MS);
        assert_eq!(Resolution::Raw.floor(17), 17);
    }
}
