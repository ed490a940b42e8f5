//! `ExportReadings`: a device's readings over a range as CSV, oldest first,
//! streamed a page at a time.

use hearth_proto::v1::{
    telemetry_service_client::TelemetryServiceClient, ExportReadingsRequest, Metric, Reading,
    ReadingBatch,
};
use tonic::{transport::Channel, Code, Status};

use crate::helpers::{spawn_app, TestApp, HOME, SENSOR};

/// 2026-11-30T07:30:00.000Z, the app's clock in these tests.
pub(crate) const T0: i64 = 1_796_023_800_000;

pub(crate) async fn app_with_a_sensor() -> (TestApp, TelemetryServiceClient<Channel>) {
    let app = spawn_app().await;
    app.clock.set(T0);
    app.home_with_a_fan().await;
    app.add_sensor("Sensor").await;
    let telemetry = app.telemetry().await;
    (app, telemetry)
}

pub(crate) fn batch(seq: u64, time_unix_ms: i64, readings: &[(Metric, f64)]) -> ReadingBatch {
    ReadingBatch {
        home_id: HOME.into(),
        device_id: SENSOR.into(),
        seq,
        time_unix_ms,
        readings: readings
            .iter()
            .map(|&(metric, value)| Reading {
                metric: metric as i32,
                value,
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) async fn ingest(
    telemetry: &mut TelemetryServiceClient<Channel>,
    batches: Vec<ReadingBatch>,
) {
    let count = batches.len() as u32;
    let response = telemetry
        .ingest_batch(hearth_proto::v1::IngestBatchRequest {
            batches,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, count, "{:?}", response.rejected);
}

/// The chunks of one export, each as text.
async fn export(
    telemetry: &mut TelemetryServiceClient<Channel>,
    request: ExportReadingsRequest,
) -> Result<Vec<String>, Status> {
    let mut stream = telemetry.export_readings(request).await?.into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await? {
        chunks.push(String::from_utf8(chunk.csv).expect("the CSV is UTF-8"));
    }
    Ok(chunks)
}

fn request(metric: Metric, start_unix_ms: i64, end_unix_ms: i64) -> ExportReadingsRequest {
    ExportReadingsRequest {
        device_id: SENSOR.into(),
        metric: metric as i32,
        start_unix_ms,
        end_unix_ms,
    }
}

/// Four instants a second apart, each with a temperature and a humidity,
/// stored out of order.
async fn four_instants(telemetry: &mut TelemetryServiceClient<Channel>) {
    let at = |seq: u64| {
        let temperature = 20.0 + seq as f64 + 0.25;
        let humidity = 40.0 + seq as f64;
        batch(
            seq,
            T0 - 4_000 + seq as i64 * 1_000,
            &[
                (Metric::HumidityPercent, humidity),
                (Metric::TemperatureCelsius, temperature),
            ],
        )
    };
    ingest(telemetry, vec![at(3), at(1), at(4), at(2)]).await;
}

#[tokio::test]
async fn an_export_is_csv_of_the_range_oldest_first_with_units() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    four_instants(&mut telemetry).await;

    // From the second instant (inclusive) to the fourth (exclusive).
    let chunks = export(&mut telemetry, request(Metric::Unspecified, T0 - 2_000, T0))
        .await
        .unwrap();
    assert_eq!(
        chunks.concat(),
        "time_utc,device,metric,value,unit\n\
         2026-11-30T07:29:58.000Z,sensor,temperature_celsius,22.25,°C\n\
         2026-11-30T07:29:58.000Z,sensor,humidity_percent,42,%\n\
         2026-11-30T07:29:59.000Z,sensor,temperature_celsius,23.25,°C\n\
         2026-11-30T07:29:59.000Z,sensor,humidity_percent,43,%\n"
    );

    let temperatures = export(&mut telemetry, request(Metric::TemperatureCelsius, 0, 0))
        .await
        .unwrap()
        .concat();
    let values: Vec<&str> = temperatures
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(
        values,
        ["21.25", "22.25", "23.25", "24.25"],
        "{temperatures}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_empty_range_exports_the_header_alone() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    four_instants(&mut telemetry).await;
    let chunks = export(&mut telemetry, request(Metric::Unspecified, T0 + 1, 0))
        .await
        .unwrap();
    assert_eq!(chunks.concat(), "time_utc,device,metric,value,unit\n");
    app.stop().await;
}

#[tokio::test]
async fn an_export_longer_than_a_page_streams_every_reading_in_order() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    const COUNT: i64 = 2_500;
    let start = T0 - COUNT * 1_000;
    let batches = (0..COUNT)
        .map(|i| {
            let value = 15.0 + (i % 200) as f64 / 10.0;
            batch(
                i as u64 + 1,
                start + i * 1_000,
                &[(Metric::TemperatureCelsius, value)],
            )
        })
        .collect();
    ingest(&mut telemetry, batches).await;

    let chunks = export(&mut telemetry, request(Metric::Unspecified, 0, 0))
        .await
        .unwrap();
    assert!(
        chunks.len() >= 3,
        "2,500 readings in pages of 1,000: {} chunks",
        chunks.len()
    );
    assert!(
        chunks.iter().all(|c| c.ends_with('\n')),
        "every chunk holds whole lines"
    );
    let csv = chunks.concat();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time_utc,device,metric,value,unit"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), COUNT as usize, "each reading once");
    assert_eq!(rows[0][0], "2026-11-30T06:48:20.000Z");
    assert_eq!(rows[COUNT as usize - 1][0], "2026-11-30T07:29:59.000Z");
    assert!(
        rows.windows(2).all(|w| w[0][0] < w[1][0]),
        "times strictly increase across pages"
    );
    for (i, row) in rows.iter().enumerate() {
        let expected = 15.0 + (i % 200) as f64 / 10.0;
        assert_eq!(row[3].parse::<f64>().unwrap(), expected, "row {i}: {row:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_export_requests_name_their_field() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let cases = [
        (
            ExportReadingsRequest {
                device_id: "nobody".into(),
                ..request(Metric::Unspecified, 0, 0)
            },
            Code::NotFound,
            "device_id",
        ),
        (
            ExportReadingsRequest {
                device_id: "no/such".into(),
                ..request(Metric::Unspecified, 0, 0)
            },
            Code::InvalidArgument,
            "device_id",
        ),
        (
            request(Metric::Unspecified, T0, T0 - 1),
            Code::InvalidArgument,
            "start_unix_ms",
        ),
        (
            request(Metric::Unspecified, -5, 0),
            Code::InvalidArgument,
            "start_unix_ms",
        ),
        (
            ExportReadingsRequest {
                metric: 99,
                ..request(Metric::Unspecified, 0, 0)
            },
            Code::InvalidArgument,
            "metric",
        ),
    ];
    for (bad, code, field) in cases {
        let status = export(&mut telemetry, bad.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{bad:?}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{bad:?}: names {field}: {status:?}"
        );
    }
    app.stop().await;
}
