//! Losing the broker while running: Hearth reconnects, resubscribes, and
//! readings published after the broker is back are stored.

use std::time::Duration;

use futures::StreamExt as _;
use hearth_proto::v1::{DeviceKind, Metric, Reading, ReadingBatch, WatchReadingsRequest};
use hearth_tests::{unique, Backend, PrivateBroker, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_reconnects_after_the_broker_restarts() {
    let broker = PrivateBroker::start().await;
    let (port, url) = (broker.port, broker.url());
    let app = TestApp::spawn_with(
        Backend::External,
        &[("HEARTH_DEMO", "false"), ("HEARTH_MQTT_URL", &url)],
    )
    .await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut live = app
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: home.clone(),
            device_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let batch = |seq: u64| ReadingBatch {
        seq,
        time_unix_ms: hearth_agent::unix_ms_now(),
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 21.0,
        }],
        ..Default::default()
    };
    let mut wait_for = async |seq: u64| {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let message = live
                    .next()
                    .await
                    .expect("stream open")
                    .expect("live message");
                if message.readings.iter().any(|r| r.seq == seq) {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("reading {seq} not stored"));
    };

    app.connect_as_device(&sensor)
        .await
        .publish_readings(&app.topics, &home, &sensor, &batch(1))
        .await;
    wait_for(1).await;

    broker.stop();
    let broker = PrivateBroker::start_on(port).await;

    // Hearth must have resubscribed before this publish, or a plain broker
    // drops it: retry the publish (new seq each time) until one is stored.
    let mut device = app.connect_as_device(&sensor).await;
    let mut stored = false;
    for seq in 2..40 {
        device
            .publish_readings(&app.topics, &home, &sensor, &batch(seq))
            .await;
        let seen = tokio::time::timeout(Duration::from_millis(500), wait_for(seq)).await;
        if seen.is_ok() {
            stored = true;
            break;
        }
    }
    assert!(
        stored,
        "no reading stored after the broker came back:\n{}",
        app.logs()
    );
    assert!(
        app.logs().contains("reconnected to the MQTT broker"),
        "{}",
        app.logs()
    );
    broker.stop();
}
