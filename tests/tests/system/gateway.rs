//! The LAN path: a sensor's UDP datagrams → `hearth-gateway` → the backend.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt as _;
use hearth_proto::v1::{DeviceKind, Metric, Reading, ReadingBatch, WatchReadingsRequest};
use hearth_tests::{both, unique, Backend, TestApp, TestGateway};
use prost::Message as _;

async fn udp_datagrams_reach_storage_through_the_gateway(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut live = app.telemetry().await.watch_readings(WatchReadingsRequest { home_id: home.clone(), device_ids: vec![] }).await.unwrap().into_inner();
    let gateway = TestGateway::spawn(&app).await;

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&[0xff, 0xff, 0xff], gateway.udp).await.unwrap();
    let now = hearth_agent::unix_ms_now();
    for seq in 1..=20u64 {
        let batch = ReadingBatch {
            home_id: home.clone(),
            device_id: sensor.clone(),
            seq,
            time_unix_ms: now - 20_000 + seq as i64 * 1000,
            readings: vec![Reading { metric: Metric::TemperatureCelsius as i32, value: 20.0 + seq as f64 / 10.0 }],
        };
        socket.send_to(&batch.encode_to_vec(), gateway.udp).await.unwrap();
    }
    let mut seen = HashSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 20 {
            let message = live.next().await.expect("stream open").expect("live message");
            seen.extend(message.readings.iter().map(|r| r.seq));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of 20 readings arrived; gateway output:\n{}", seen.len(), gateway.logs()));
    assert_eq!(seen, (1..=20).collect::<HashSet<_>>());
    assert!(gateway.logs().contains("datagram dropped"), "the malformed datagram is logged:\n{}", gateway.logs());
}
both!(udp_datagrams_reach_storage_through_the_gateway);
