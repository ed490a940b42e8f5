//! Readings: MQTT → stored → TelemetryService, and bad input on the way.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt as _;
use hearth_proto::{
    topics::Channel,
    v1::{
        DeviceKind, IngestBatchRequest, ListReadingsRequest, Metric, Reading, ReadingBatch,
        StoredReading, WatchReadingsRequest,
    },
};
use hearth_tests::{both, unique, Backend, TestApp};
use tonic::Code;

const T0: i64 = 1_800_000_000_000;

fn now_ms() -> i64 {
    hearth_agent::unix_ms_now()
}

fn sensehat_batch(seq: u64, time_unix_ms: i64, temperature: f64) -> ReadingBatch {
    ReadingBatch {
        seq,
        time_unix_ms,
        readings: vec![
            Reading {
                metric: Metric::TemperatureCelsius as i32,
                value: temperature,
            },
            Reading {
                metric: Metric::HumidityPercent as i32,
                value: 40.0 + (seq % 50) as f64,
            },
            Reading {
                metric: Metric::PressureHpa as i32,
                value: 1000.0 + seq as f64,
            },
        ],
        ..Default::default()
    }
}

/// Waits on a live stream until a reading with `seq` arrives.
async fn wait_for_seq(
    stream: &mut tonic::Streaming<hearth_proto::v1::WatchReadingsResponse>,
    seq: u64,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = stream.next().await {
            if message
                .expect("live stream")
                .readings
                .iter()
                .any(|r| r.seq == seq)
            {
                return;
            }
        }
        panic!("live stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("reading seq {seq} was not stored in time"));
}

async fn all_pages(
    app: &TestApp,
    device: &str,
    metric: Metric,
    page_size: u32,
) -> Vec<StoredReading> {
    let mut api = app.telemetry().await;
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_readings(ListReadingsRequest {
                device_id: device.into(),
                metric: metric as i32,
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListReadings")
            .into_inner();
        assert!(page.readings.len() <= page_size as usize);
        out.extend(page.readings);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

async fn readings_over_mqtt_are_listed_newest_first_with_paging(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut live = app
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: home.clone(),
            device_ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut device = app.connect_as_device(&sensor).await;
    let start = now_ms() - 60_000;
    for seq in 1..=5 {
        device
            .publish_readings(
                &app.topics,
                &home,
                &sensor,
                &sensehat_batch(seq, start + seq as i64 * 1000, 20.0 + seq as f64),
            )
            .await;
    }
    // A redelivery of seq 3 (what a broker does after a lost PUBACK) must not be stored twice.
    device
        .publish_readings(
            &app.topics,
            &home,
            &sensor,
            &sensehat_batch(3, start + 3000, 23.0),
        )
        .await;
    device
        .publish_readings(
            &app.topics,
            &home,
            &sensor,
            &sensehat_batch(6, start + 6000, 26.0),
        )
        .await;
    wait_for_seq(&mut live, 6).await;

    let all = all_pages(&app, &sensor, Metric::Unspecified, 4).await;
    assert_eq!(
        all.len(),
        18,
        "6 batches of 3 metrics, the redelivery stored once"
    );
    let keys: HashSet<(u64, i32)> = all.iter().map(|r| (r.seq, r.metric)).collect();
    assert_eq!(keys.len(), 18, "no reading twice across pages");
    assert!(
        all.windows(2)
            .all(|w| w[0].time_unix_ms >= w[1].time_unix_ms),
        "newest first"
    );
    assert_eq!(all[0].seq, 6);

    let temperatures = all_pages(&app, &sensor, Metric::TemperatureCelsius, 2).await;
    let values: Vec<f64> = temperatures.iter().map(|r| r.value).collect();
    assert_eq!(values, [26.0, 25.0, 24.0, 23.0, 22.0, 21.0]);

    // A time range: [start+2000, start+4000) holds seq 2 and 3.
    let ranged = app
        .telemetry()
        .await
        .list_readings(ListReadingsRequest {
            device_id: sensor.clone(),
            metric: Metric::TemperatureCelsius as i32,
            start_unix_ms: start + 2000,
            end_unix_ms: start + 4000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ranged.readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 2]
    );
}
both!(readings_over_mqtt_are_listed_newest_first_with_paging);

async fn malformed_device_messages_are_dropped_and_later_readings_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut live = app
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: home.clone(),
            device_ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut device = app.connect_as_device(&sensor).await;
    let readings_topic = app
        .topics
        .device(&home, &sensor, Channel::Readings)
        .unwrap();

    // Not protobuf at all, and far over the size limit (but within the
    // broker's): refused by name, not a reason to drop the connection.
    device
        .publish(&readings_topic, vec![0xff, 0xff, 0xff, 0xff])
        .await;
    device.publish(&readings_topic, vec![0; 200 * 1024]).await;
    // Protobuf, but a NaN, an unknown metric, and an empty batch.
    let mut nan = sensehat_batch(1, now_ms(), f64::NAN);
    device
        .publish_readings(&app.topics, &home, &sensor, &nan)
        .await;
    nan.readings[0] = Reading {
        metric: 99,
        value: 1.0,
    };
    device
        .publish_readings(&app.topics, &home, &sensor, &nan)
        .await;
    device
        .publish_readings(
            &app.topics,
            &home,
            &sensor,
            &ReadingBatch {
                seq: 2,
                ..Default::default()
            },
        )
        .await;
    // A device nobody registered, and a topic with an invalid device id.
    device
        .publish_readings(
            &app.topics,
            &home,
            &unique("ghost"),
            &sensehat_batch(3, now_ms(), 20.0),
        )
        .await;
    device
        .publish(
            &format!("{}/v1/{home}/bad$id/readings", app.topics.prefix()),
            vec![],
        )
        .await;

    device
        .publish_readings(
            &app.topics,
            &home,
            &sensor,
            &sensehat_batch(7, now_ms(), 21.5),
        )
        .await;
    wait_for_seq(&mut live, 7).await;

    let stored = all_pages(&app, &sensor, Metric::Unspecified, 100).await;
    assert_eq!(
        stored.iter().map(|r| r.seq).collect::<HashSet<_>>(),
        HashSet::from([7]),
        "only the valid batch is stored"
    );
    let metrics = app.metrics().await;
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(count("hearth_mqtt_rejected_total") >= 3, "{metrics}");
    assert!(count("hearth_batches_rejected_total") >= 4, "{metrics}");
    let logs = app.logs();
    assert!(
        logs.contains(&readings_topic),
        "the log names the topic of the bad payload:\n{logs}"
    );
    assert!(
        logs.contains("is not a finite number"),
        "the log says why:\n{logs}"
    );
    assert!(
        logs.contains("over the 65536-byte limit"),
        "the log says why:\n{logs}"
    );
}
both!(malformed_device_messages_are_dropped_and_later_readings_stored);

async fn the_gateway_path_ingests_batches_and_rejects_bad_ones_by_index(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut api = app.telemetry().await;
    let at = |seq: u64| ReadingBatch {
        home_id: home.clone(),
        device_id: sensor.clone(),
        ..sensehat_batch(seq, now_ms() - 1000 + seq as i64, 20.0)
    };
    let ghost = ReadingBatch {
        device_id: unique("ghost"),
        ..at(3)
    };
    let response = api
        .ingest_batch(IngestBatchRequest {
            batches: vec![
                at(1),
                at(2),
                ghost,
                at(2),
                ReadingBatch {
                    time_unix_ms: T0 * 2,
                    ..at(4)
                },
            ],
            ..Default::default()
        })
        .await
        .expect("IngestBatch")
        .into_inner();
    assert_eq!(response.accepted, 3, "{response:?}");
    assert_eq!(
        response
            .rejected
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>(),
        [2, 4]
    );
    assert!(
        response.rejected[0].reason.contains("unknown device"),
        "{response:?}"
    );
    // Accepted means stored: readable at once, the duplicate batch once.
    assert_eq!(
        all_pages(&app, &sensor, Metric::Unspecified, 100)
            .await
            .len(),
        6
    );

    let err = api
        .list_readings(ListReadingsRequest {
            device_id: unique("ghost"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
both!(the_gateway_path_ingests_batches_and_rejects_bad_ones_by_index);

/// Readings spread over the last 90 minutes: a 1-hour chart reads raw rows,
/// a 24-hour chart the minute rollups, and both agree with what was stored.
async fn chart_series_come_from_raw_rows_and_from_rollups(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut api = app.telemetry().await;
    let now = now_ms();
    // One batch a minute, the temperature equal to the minute's index.
    let batches: Vec<_> = (0..90u64)
        .map(|i| ReadingBatch {
            home_id: home.clone(),
            device_id: sensor.clone(),
            ..sensehat_batch(i + 1, now - (90 - i as i64) * 60_000, i as f64)
        })
        .collect();
    api.ingest_batch(IngestBatchRequest {
        batches,
        ..Default::default()
    })
    .await
    .expect("IngestBatch");

    let series = |start: i64, max_points: u32| hearth_proto::v1::GetSeriesRequest {
        device_id: sensor.clone(),
        metric: Metric::TemperatureCelsius as i32,
        start_unix_ms: start,
        end_unix_ms: now,
        max_points,
    };
    let hour = api
        .get_series(series(now - 3_600_000, 12))
        .await
        .expect("GetSeries")
        .into_inner();
    assert_eq!(hour.resolution, "raw");
    assert_eq!(hour.bucket_ms, 300_000);
    let count: u64 = hour.points.iter().map(|p| p.count).sum();
    assert_eq!(count, 60, "the last hour's 60 readings: {hour:?}");
    assert!(hour.points.iter().all(|p| p.min <= p.avg && p.avg <= p.max));
    assert_eq!(hour.points.last().unwrap().max, 89.0);

    // The rollups follow a few seconds after the readings are stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let day = loop {
        let day = api
            .get_series(series(now - 86_400_000, 300))
            .await
            .expect("GetSeries")
            .into_inner();
        if day.points.iter().map(|p| p.count).sum::<u64>() == 90 {
            break day;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollups never caught up: {day:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        (day.resolution.as_str(), day.bucket_ms),
        ("minute", 300_000)
    );
    let min = day.points.iter().map(|p| p.min).fold(f64::MAX, f64::min);
    let max = day.points.iter().map(|p| p.max).fold(f64::MIN, f64::max);
    assert_eq!((min, max), (0.0, 89.0));

    let bad = api
        .get_series(hearth_proto::v1::GetSeriesRequest {
            metric: Metric::Unspecified as i32,
            ..series(now - 1_000, 0)
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("metric"), "{}", bad.message());
}
both!(chart_series_come_from_raw_rows_and_from_rollups);
