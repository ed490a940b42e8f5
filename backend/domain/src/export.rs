//! Readings as CSV for spreadsheets and scripts (`ExportReadings`): one
//! header line, then one line per reading with its UTC time in ISO 8601, its
//! device, metric, value and unit. Pure formatting: the caller pages through
//! storage and appends each page to a buffer of its own.

use std::fmt::Write as _;

use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

use crate::{Reading, UnixMs};

/// The first line of every export.
pub const CSV_HEADER: &str = "time_utc,device,metric,value,unit\n";

/// `2026-11-30T07:30:05.042Z`: what spreadsheets and `date -d` read as UTC.
const ISO_8601_MS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `unix_ms` as ISO 8601 UTC with milliseconds; times outside what a
/// calendar year of four digits holds are written as the raw number, which
/// validation keeps from ever being stored.
pub fn iso_8601_utc(unix_ms: UnixMs) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(ISO_8601_MS).ok())
        .unwrap_or_else(|| unix_ms.to_string())
}

/// Appends one CSV line per reading, in the order given.
pub fn append_csv_rows(out: &mut String, readings: &[Reading]) {
    for r in readings {
        // Why Display for the value: it is the shortest text that reads back
        // as the same f64 (21.5, not 21.500000000000004), and never uses an
        // exponent, which some spreadsheets misread.
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            iso_8601_utc(r.time),
            field(r.device_id.as_str()),
            r.metric.short_name(),
            r.value,
            field(r.metric.unit().unwrap_or("")),
        );
    }
}

/// A field quoted as RFC 4180 asks when it holds a comma, quote or line end.
// Why here although ids and units hold none today: the format must stay
// readable if they ever do.
fn field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Metric;

    use super::*;
    use crate::DeviceId;

    fn reading(metric: Metric, time: UnixMs, value: f64) -> Reading {
        Reading {
            device_id: DeviceId::parse("living-room", "device_id").unwrap(),
            metric,
            seq: 7,
            time,
            value,
        }
    }

    #[test]
    fn times_are_iso_8601_utc_with_milliseconds() {
        assert_eq!(iso_8601_utc(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-30 07:30:05.042 UTC
        assert_eq!(iso_8601_utc(1_796_023_805_042), "2026-11-30T07:30:05.042Z");
        assert_eq!(iso_8601_utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rows_carry_device_metric_value_and_unit() {
        let mut out = String::from(CSV_HEADER);
        append_csv_rows(
            &mut out,
            &[
                reading(Metric::TemperatureCelsius, 1_796_023_805_042, 21.5),
                reading(Metric::HumidityPercent, 1_796_023_805_042, 45.0),
                reading(Metric::PressureHpa, 1_796_023_806_000, 1013.25),
            ],
        );
        assert_eq!(
            out,
            "time_utc,device,metric,value,unit\n\
             2026-11-30T07:30:05.042Z,living-room,temperature_celsius,21.5,°C\n\
             2026-11-30T07:30:05.042Z,living-room,humidity_percent,45,%\n\
             2026-11-30T07:30:06.000Z,living-room,pressure_hpa,1013.25,hPa\n"
        );
    }

    #[test]
    fn values_keep_their_precision_without_exponents() {
        let mut out = String::new();
        append_csv_rows(
            &mut out,
            &[
                reading(Metric::TemperatureCelsius, 0, 0.1 + 0.2),
                reading(Metric::TemperatureCelsius, 0, -0.000_001),
            ],
        );
        let texts: Vec<&str> = out.lines().map(|l| l.split(',').nth(3).unwrap()).collect();
        assert_eq!(texts, ["0.30000000000000004", "-0.000001"]);
        let values: Vec<f64> = texts.iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(values, [0.1 + 0.2, -0.000_001]);
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }
}
