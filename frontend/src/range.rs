//! The time ranges a chart shows and the maths around them: the window of a
//! range at a given time, a custom range checked, how many buckets to ask
//! `GetSeries` for, and where a series has holes. Pure, tested natively.

/// A chart's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last [`LIVE_MS`], moving as readings arrive.
    Live,
    LastHour,
    Day,
    Week,
    /// `[start, end)`, Unix ms, chosen by the user.
    Custom {
        start_unix_ms: i64,
        end_unix_ms: i64,
    },
}

/// How far back the live chart looks.
pub const LIVE_MS: i64 = 10 * MINUTE;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// The longest custom range: a year, which the daily rollup serves in 366 points.
pub const LONGEST: i64 = 366 * DAY;

/// Buckets asked of `GetSeries`: about one per 3 px of a desktop chart.
pub const MAX_POINTS: u32 = 300;

/// The preset ranges in button order, with their labels.
pub const PRESETS: [(Range, &str); 4] = [
    (Range::Live, "Live"),
    (Range::LastHour, "1 h"),
    (Range::Day, "24 h"),
    (Range::Week, "7 d"),
];

/// `[start, end)` in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
}

impl Window {
    pub fn duration_ms(self) -> i64 {
        self.end_unix_ms - self.start_unix_ms
    }
}

impl Range {
    /// The window this range covers at `now_unix_ms`.
    pub fn window(self, now_unix_ms: i64) -> Window {
        let back = |ms| Window {
            start_unix_ms: now_unix_ms - ms,
            end_unix_ms: now_unix_ms,
        };
        match self {
            Self::Live => back(LIVE_MS),
            Self::LastHour => back(HOUR),
            Self::Day => back(DAY),
            Self::Week => back(7 * DAY),
            Self::Custom {
                start_unix_ms,
                end_unix_ms,
            } => Window {
                start_unix_ms,
                end_unix_ms,
            },
        }
    }

    /// A custom range from what the user entered (`None`: an empty or
    /// unreadable field), with an end in the future moved to now.
    pub fn custom(start: Option<i64>, end: Option<i64>, now_unix_ms: i64) -> Result<Self, String> {
        let start = start.ok_or("Enter when the range starts.")?;
        let end = end.ok_or("Enter when the range ends.")?.min(now_unix_ms);
        if start >= end {
            return Err("The range must start before it ends, and before now.".into());
        }
        if end - start > LONGEST {
            return Err("The range can be a year long at most.".into());
        }
        Ok(Self::Custom {
            start_unix_ms: start,
            end_unix_ms: end,
        })
    }
}

/// Splits points (times in Unix ms, oldest first) where two neighbours are
/// more than `gap_ms` apart, so a chart does not draw a line across a time
/// with no data (a series leaves empty buckets out).
pub fn runs<T>(points: &[T], time: impl Fn(&T) -> i64, gap_ms: i64) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if time(&points[i]) - time(&points[i - 1]) > gap_ms {
            runs.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        runs.push(&points[start..]);
    }
    runs
}

/// The gap that breaks a series of `bucket_ms` buckets: more than one
/// bucket missing.
pub fn series_gap(bucket_ms: i64) -> i64 {
    bucket_ms.max(MINUTE) * 2
}

/// The gap that breaks the live line: a sensor silent this long.
pub const LIVE_GAP_MS: i64 = MINUTE;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn presets_end_now_and_reach_back_their_length() {
        assert_eq!(Range::LastHour.window(NOW).duration_ms(), HOUR);
        assert_eq!(Range::Day.window(NOW).duration_ms(), DAY);
        assert_eq!(Range::Week.window(NOW).duration_ms(), 7 * DAY);
        assert_eq!(Range::Live.window(NOW).duration_ms(), LIVE_MS);
        assert_eq!(Range::Week.window(NOW).end_unix_ms, NOW);
    }

    #[test]
    fn a_custom_range_must_start_before_it_ends() {
        assert_eq!(
            Range::custom(Some(NOW - HOUR), Some(NOW - MINUTE), NOW),
            Ok(Range::Custom {
                start_unix_ms: NOW - HOUR,
                end_unix_ms: NOW - MINUTE
            })
        );
        assert!(Range::custom(Some(NOW - MINUTE), Some(NOW - HOUR), NOW).is_err());
        assert!(Range::custom(None, Some(NOW), NOW).is_err());
        assert!(Range::custom(Some(NOW - HOUR), None, NOW).is_err());
        assert!(Range::custom(Some(NOW - 400 * DAY), Some(NOW), NOW).is_err());
    }

    #[test]
    fn a_custom_range_ending_in_the_future_ends_now() {
        assert_eq!(
            Range::custom(Some(NOW - HOUR), Some(NOW + DAY), NOW)
                .map(|r| r.window(NOW).end_unix_ms),
            Ok(NOW)
        );
        assert!(Range::custom(Some(NOW + HOUR), Some(NOW + DAY), NOW).is_err());
    }

    #[test]
    fn runs_break_where_points_are_further_apart_than_the_gap() {
        let times = [0, 10, 20, 100, 110, 300];
        let split: Vec<Vec<i64>> = runs(&times, |t| *t, 50)
            .into_iter()
            .map(<[i64]>::to_vec)
            .collect();
        assert_eq!(split, vec![vec![0, 10, 20], vec![100, 110], vec![300]]);
        assert!(runs(&[] as &[i64], |t| *t, 50).is_empty());
    }

    #[test]
    fn a_series_breaks_after_one_missing_bucket() {
        assert_eq!(series_gap(HOUR), 2 * HOUR);
        // A series without a bucket width yet still gets a sane gap.
        assert_eq!(series_gap(0), 2 * MINUTE);
    }
}
