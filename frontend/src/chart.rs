//! The geometry of a chart, apart from drawing it: value and time scales with
//! "nice" ticks, SVG path data for a line and a min–max band, positions of
//! markers and threshold lines, and the bounded buffer of live points. The
//! view (`views::chart`) only renders what this computes. Pure, tested
//! natively.

use std::collections::VecDeque;

use crate::{
    number,
    range::{self, Window},
};

/// The SVG's own coordinate space; the element stretches it to its box.
pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 300.0;

/// One bucket of a downsampled series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub time_unix_ms: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

impl Bucket {
    /// The buckets of a `GetSeries` answer, in its order.
    pub fn of_series(series: &hearth_proto::v1::GetSeriesResponse) -> Vec<Self> {
        series
            .points
            .iter()
            .map(|p| Self {
                time_unix_ms: p.start_unix_ms,
                min: p.min,
                avg: p.avg,
                max: p.max,
            })
            .collect()
    }
}

/// One point of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time_unix_ms: i64,
    pub value: f64,
}

/// What to draw in a window.
#[derive(Debug, Clone, Default)]
pub struct Plot<'a> {
    /// Min–max band and avg line, from `GetSeries`.
    pub buckets: &'a [Bucket],
    /// A line of raw points (the live chart).
    pub points: &'a [Point],
    /// Where the line or band breaks.
    pub gap_ms: i64,
    /// Horizontal lines (rule thresholds), kept inside the value range.
    pub levels: &'a [f64],
}

/// A tick on an axis: where (0–100 % of the plot) and what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub percent: f64,
    pub value: f64,
}

/// Everything the view draws, in SVG units and percentages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Geometry {
    /// Path data of the min–max band ("" for none).
    pub band: String,
    /// Path data of the avg or live line ("" for none).
    pub line: String,
    /// Value ticks, bottom to top.
    pub value_ticks: Vec<Tick>,
    /// Time ticks (value = Unix ms), left to right.
    pub time_ticks: Vec<Tick>,
    /// The y (SVG units) of each of `Plot::levels`.
    pub levels: Vec<f64>,
    pub empty: bool,
    scale: Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Scale {
    start_ms: i64,
    end_ms: i64,
    low: f64,
    high: f64,
}

impl Scale {
    fn x(&self, time_unix_ms: i64) -> f64 {
        let span = (self.end_ms - self.start_ms).max(1) as f64;
        (time_unix_ms - self.start_ms) as f64 / span * WIDTH
    }

    fn y(&self, value: f64) -> f64 {
        let span = self.high - self.low;
        if span <= 0.0 {
            return HEIGHT / 2.0;
        }
        HEIGHT - (value - self.low) / span * HEIGHT
    }
}

impl Geometry {
    /// Lays out `plot` over `window`; `utc_offset_ms` (local time minus UTC)
    /// aligns hour and day ticks with the user's clock.
    pub fn of(plot: &Plot, window: Window, utc_offset_ms: i64) -> Self {
        let values = plot
            .buckets
            .iter()
            .flat_map(|b| [b.min, b.max])
            .chain(plot.points.iter().map(|p| p.value))
            .filter(|v| v.is_finite());
        let empty = plot.buckets.is_empty() && plot.points.is_empty();
        let (low, high) = bounds(values.chain(plot.levels.iter().copied()));
        let step = nice_step((high - low) / 4.0);
        let (low, high) = ((low / step).floor() * step, (high / step).ceil() * step);
        let scale = Scale {
            start_ms: window.start_unix_ms,
            end_ms: window.end_unix_ms,
            low,
            high,
        };

        let mut band = String::new();
        let mut line = String::new();
        for run in range::runs(plot.buckets, |b| b.time_unix_ms, plot.gap_ms) {
            let upper = run
                .iter()
                .map(|b| (scale.x(b.time_unix_ms), scale.y(b.max)));
            let lower = run
                .iter()
                .rev()
                .map(|b| (scale.x(b.time_unix_ms), scale.y(b.min)));
            polygon(&mut band, upper.chain(lower));
            polyline(
                &mut line,
                run.iter()
                    .map(|b| (scale.x(b.time_unix_ms), scale.y(b.avg))),
            );
        }
        for run in range::runs(plot.points, |p| p.time_unix_ms, plot.gap_ms) {
            polyline(
                &mut line,
                run.iter()
                    .map(|p| (scale.x(p.time_unix_ms), scale.y(p.value))),
            );
        }

        let value_ticks = ticks(low, high, step)
            .map(|value| Tick {
                percent: scale.y(value) / HEIGHT * 100.0,
                value,
            })
            .collect();
        let time_ticks = time_ticks(window, utc_offset_ms)
            .into_iter()
            .map(|time| Tick {
                percent: scale.x(time) / WIDTH * 100.0,
                value: time as f64,
            })
            .collect();
        Self {
            band,
            line,
            value_ticks,
            time_ticks,
            levels: plot.levels.iter().map(|&v| scale.y(v)).collect(),
            empty,
            scale,
        }
    }

    /// The x (SVG units) of `time_unix_ms`.
    pub fn x(&self, time_unix_ms: i64) -> f64 {
        self.scale.x(time_unix_ms)
    }
}

/// The lowest and highest value, widened so a flat line sits mid-chart;
/// (0, 1) for none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if high - low < 1e-9 {
        return (low - 0.5, high + 0.5);
    }
    (low, high)
}

/// The 1, 2 or 5 × 10ⁿ step nearest above `rough`.
pub fn nice_step(rough: f64) -> f64 {
    if rough.is_nan() || rough <= 0.0 || !rough.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    let fraction = rough / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn ticks(low: f64, high: f64, step: f64) -> impl Iterator<Item = f64> {
    let count = ((high - low) / step).round() as i64;
    (0..=count).map(move |i| low + i as f64 * step)
}

/// Time steps a tick may fall on.
const TIME_STEPS: [i64; 13] = [
    range::MINUTE,
    2 * range::MINUTE,
    5 * range::MINUTE,
    10 * range::MINUTE,
    15 * range::MINUTE,
    30 * range::MINUTE,
    range::HOUR,
    2 * range::HOUR,
    3 * range::HOUR,
    6 * range::HOUR,
    12 * range::HOUR,
    range::DAY,
    2 * range::DAY,
];

/// At most six ticks on whole local minutes, hours or days inside `window`.
pub fn time_ticks(window: Window, utc_offset_ms: i64) -> Vec<i64> {
    let duration = window.duration_ms();
    let step = TIME_STEPS
        .into_iter()
        .find(|step| duration / step <= 6)
        .unwrap_or_else(|| (duration / 6 / range::DAY + 1) * range::DAY);
    let local_start = window.start_unix_ms + utc_offset_ms;
    let first = (local_start + step - 1).div_euclid(step) * step - utc_offset_ms;
    (0..)
        .map(|i| first + i * step)
        .take_while(|&t| t <= window.end_unix_ms)
        .collect()
}

fn polyline(out: &mut String, points: impl Iterator<Item = (f64, f64)>) {
    for (i, (x, y)) in points.enumerate() {
        out.push(if i == 0 { 'M' } else { 'L' });
        number::push_fixed(out, x, 1);
        out.push(' ');
        number::push_fixed(out, y, 1);
    }
}

fn polygon(out: &mut String, points: impl Iterator<Item = (f64, f64)>) {
    let before = out.len();
    polyline(out, points);
    if out.len() > before {
        out.push('Z');
    }
}

/// The newest points of one metric, for the live chart: kept in time order,
/// at most `capacity`, older than the window dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePoints {
    points: VecDeque<Point>,
    capacity: usize,
}

impl LivePoints {
    pub fn new(capacity: usize) -> Self {
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `point` in time order (a repeat of a held time is ignored).
    pub fn push(&mut self, point: Point) {
        let at = self
            .points
            .partition_point(|p| p.time_unix_ms < point.time_unix_ms);
        if self
            .points
            .get(at)
            .is_some_and(|p| p.time_unix_ms == point.time_unix_ms)
        {
            return;
        }
        self.points.insert(at, point);
        while self.points.len() > self.capacity {
            self.points.pop_front();
        }
    }

    /// Drops points older than `start_unix_ms`.
    pub fn trim(&mut self, start_unix_ms: i64) {
        while self
            .points
            .front()
            .is_some_and(|p| p.time_unix_ms < start_unix_ms)
        {
            self.points.pop_front();
        }
    }

    /// The points, oldest first.
    pub fn to_vec(&self) -> Vec<Point> {
        self.points.iter().copied().collect()
    }

    pub fn latest(&self) -> Option<Point> {
        self.points.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::{HOUR, MINUTE};

    const T0: i64 = 1_699_999_200_000; // a whole hour, UTC

    fn window(minutes: i64) -> Window {
        Window {
            start_unix_ms: T0,
            end_unix_ms: T0 + minutes * MINUTE,
        }
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(4.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(230.0), 500.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn a_line_spans_the_window_and_the_value_range() {
        let points = [
            Point {
                time_unix_ms: T0,
                value: 20.0,
            },
            Point {
                time_unix_ms: T0 + 10 * MINUTE,
                value: 30.0,
            },
        ];
        let plot = Plot {
            points: &points,
            gap_ms: HOUR,
            ..Default::default()
        };
        let geometry = Geometry::of(&plot, window(10), 0);
        // 20 and 30 are whole ticks of step 5: bottom-left to top-right.
        assert_eq!(geometry.line, "M0.0 300.0L1000.0 0.0");
        let values: Vec<f64> = geometry.value_ticks.iter().map(|t| t.value).collect();
        assert_eq!(values, [20.0, 25.0, 30.0]);
        assert_eq!(geometry.value_ticks[0].percent, 100.0);
        assert!(!geometry.empty);
        assert_eq!(geometry.band, "");
    }

    #[test]
    fn the_band_goes_along_the_maxima_and_back_along_the_minima() {
        let buckets = [
            Bucket {
                time_unix_ms: T0,
                min: 0.0,
                avg: 5.0,
                max: 10.0,
            },
            Bucket {
                time_unix_ms: T0 + 10 * MINUTE,
                min: 0.0,
                avg: 5.0,
                max: 10.0,
            },
        ];
        let plot = Plot {
            buckets: &buckets,
            gap_ms: HOUR,
            ..Default::default()
        };
        let geometry = Geometry::of(&plot, window(10), 0);
        assert_eq!(geometry.band, "M0.0 0.0L1000.0 0.0L1000.0 300.0L0.0 300.0Z");
        assert_eq!(geometry.line, "M0.0 150.0L1000.0 150.0");
    }

    #[test]
    fn a_gap_in_the_data_breaks_the_line() {
        let points: Vec<Point> = [0, 1, 7, 8]
            .into_iter()
            .map(|m| Point {
                time_unix_ms: T0 + m * MINUTE,
                value: 1.0,
            })
            .collect();
        let plot = Plot {
            points: &points,
            gap_ms: 2 * MINUTE,
            ..Default::default()
        };
        let line = Geometry::of(&plot, window(10), 0).line;
        assert_eq!(line.matches('M').count(), 2, "{line}");
    }

    #[test]
    fn levels_widen_the_value_range_to_stay_visible() {
        let points = [Point {
            time_unix_ms: T0,
            value: 20.0,
        }];
        let plot = Plot {
            points: &points,
            levels: &[25.0],
            gap_ms: HOUR,
            ..Default::default()
        };
        let geometry = Geometry::of(&plot, window(10), 0);
        assert!(geometry.levels[0] >= 0.0 && geometry.levels[0] <= HEIGHT);
        assert!(geometry.value_ticks.iter().any(|t| t.value >= 25.0));
    }

    #[test]
    fn nothing_to_draw_is_marked_empty() {
        let geometry = Geometry::of(&Plot::default(), window(10), 0);
        assert!(geometry.empty);
        assert_eq!((geometry.line.as_str(), geometry.band.as_str()), ("", ""));
    }

    #[test]
    fn time_ticks_fall_on_whole_local_units() {
        // Ten minutes: every 2 minutes, from the start.
        let ticks = time_ticks(window(10), 0);
        assert_eq!(ticks.len(), 6);
        assert!(ticks.iter().all(|t| t % (2 * MINUTE) == 0));
        // A day in UTC+1: ticks on local whole hours (6 h apart).
        let day = Window {
            start_unix_ms: T0 + 17 * MINUTE,
            end_unix_ms: T0 + 17 * MINUTE + 24 * HOUR,
        };
        let ticks = time_ticks(day, HOUR);
        assert!(ticks.len() <= 6 && ticks.len() >= 4, "{ticks:?}");
        assert!(ticks.iter().all(|t| (t + HOUR) % (6 * HOUR) == 0));
        assert!(ticks
            .iter()
            .all(|&t| t >= day.start_unix_ms && t <= day.end_unix_ms));
    }

    #[test]
    fn live_points_stay_ordered_bounded_and_inside_the_window() {
        let mut live = LivePoints::new(3);
        for (t, v) in [(30, 3.0), (10, 1.0), (20, 2.0), (20, 9.0), (40, 4.0)] {
            live.push(Point {
                time_unix_ms: t,
                value: v,
            });
        }
        let times: Vec<i64> = live.to_vec().iter().map(|p| p.time_unix_ms).collect();
        assert_eq!(times, [20, 30, 40]);
        assert_eq!(live.to_vec()[0].value, 2.0);
        live.trim(35);
        assert_eq!(live.latest().map(|p| p.value), Some(4.0));
        assert_eq!(live.to_vec().len(), 1);
    }
}
