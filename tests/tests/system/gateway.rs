//! The LAN path: a sensor's UDP datagrams → `hearth-gateway` (durable queue)
//! → the backend. Nothing the gateway accepted is lost when the backend or
//! the gateway itself goes away; bad datagrams are counted by reason and do
//! not hold up good ones; `/metrics` shows all of it.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use futures::StreamExt as _;
use hearth_proto::v1::{
    DeviceKind, Metric, Reading, ReadingBatch, StoredReading, WatchReadingsRequest,
};
use hearth_tests::{both, unique, Backend, TempDir, TestApp, TestGateway};
use prost::Message as _;

fn batch(home: &str, sensor: &str, seq: u64, base: i64) -> ReadingBatch {
    ReadingBatch {
        home_id: home.into(),
        device_id: sensor.into(),
        seq,
        time_unix_ms: base + seq as i64 * 10,
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 20.0 + seq as f64 / 100.0,
        }],
    }
}

async fn send(
    to: SocketAddr,
    home: &str,
    sensor: &str,
    seqs: std::ops::RangeInclusive<u64>,
    base: i64,
) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in seqs {
        socket
            .send_to(&batch(home, sensor, seq, base).encode_to_vec(), to)
            .await
            .unwrap();
        if seq % 50 == 0 {
            // Why: loopback UDP drops when a socket buffer overflows; pace like a sensor would.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every reading of `sensor`, oldest first.
async fn stored(app: &TestApp, sensor: &str) -> Vec<StoredReading> {
    app.stored_readings(sensor).await
}

/// Waits until `n` readings of `sensor` are stored.
async fn wait_for_count(app: &TestApp, sensor: &str, n: usize, gateway: &TestGateway) {
    for _ in 0..600 {
        if stored(app, sensor).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} readings stored; gateway:\n{}\nhearth:\n{}",
        gateway.logs(),
        app.logs()
    );
}

fn assert_exactly_once_in_order(readings: &[StoredReading], n: u64, base: i64) {
    assert_eq!(
        readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert!(
        readings
            .iter()
            .all(|r| r.time_unix_ms == base + r.seq as i64 * 10),
        "original timestamps kept"
    );
}

async fn udp_datagrams_reach_storage_through_the_gateway(backend: Backend) {
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
    let data = TempDir::new();
    let gateway = TestGateway::spawn(&app, &data).await;

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&[0xff, 0xff, 0xff], gateway.udp)
        .await
        .unwrap();
    send(
        gateway.udp,
        &home,
        &sensor,
        1..=20,
        hearth_agent::unix_ms_now() - 20_000,
    )
    .await;
    let mut seen = HashSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 20 {
            let message = live
                .next()
                .await
                .expect("stream open")
                .expect("live message");
            seen.extend(message.readings.iter().map(|r| r.seq));
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of 20 readings arrived; gateway output:\n{}",
            seen.len(),
            gateway.logs()
        )
    });
    assert_eq!(seen, (1..=20).collect::<HashSet<_>>());
    assert!(
        gateway.logs().contains("datagram dropped"),
        "the malformed datagram is logged:\n{}",
        gateway.logs()
    );
}
both!(udp_datagrams_reach_storage_through_the_gateway);

/// The backend goes away mid-stream and comes back: every reading arrives
/// exactly once, in order, with its original timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_outage_loses_nothing() {
    let mut app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    let gateway = TestGateway::spawn(&app, &data).await;
    let base = hearth_agent::unix_ms_now() - 60_000;

    send(gateway.udp, &home, &sensor, 1..=100, base).await;
    wait_for_count(&app, &sensor, 100, &gateway).await;
    // Stop the backend; readings sent meanwhile wait in the gateway's queue.
    assert!(app.terminate().success());
    send(gateway.udp, &home, &sensor, 101..=300, base).await;
    gateway.wait_for_queued(200).await;
    app.restart().await;
    send(gateway.udp, &home, &sensor, 301..=400, base).await;
    wait_for_count(&app, &sensor, 400, &gateway).await;
    assert_exactly_once_in_order(&stored(&app, &sensor).await, 400, base);
}

/// The gateway is killed with SIGKILL while holding a backlog: restarted,
/// it forwards everything it had accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_keeps_its_backlog() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    // No backend at this address yet: everything stays queued.
    let nowhere = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let gateway = TestGateway::spawn_to(&nowhere, &data, "127.0.0.1:0").await;
    let base = hearth_agent::unix_ms_now() - 60_000;
    send(gateway.udp, &home, &sensor, 1..=300, base).await;
    gateway.wait_for_queued(300).await;
    gateway.kill();

    let gateway = TestGateway::spawn(&app, &data).await;
    wait_for_count(&app, &sensor, 300, &gateway).await;
    assert_exactly_once_in_order(&stored(&app, &sensor).await, 300, base);
}

/// The MQTT bridge: an actuator on the LAN broker is switched from the cloud
/// through the gateway, and its acknowledgement comes back the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bridges_desired_and_reported_state() {
    use hearth_agent::hardware::Output as _;
    use hearth_proto::v1::{Mode, SetModeRequest};
    let app = TestApp::spawn(Backend::External).await;
    let lan = hearth_tests::PrivateBroker::start().await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    let data = TempDir::new();
    let prefix = app.topics.prefix().to_owned();
    let gateway = TestGateway::spawn_with(
        &app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &[
            ("HEARTH_GATEWAY_LAN_MQTT", &lan.url()),
            ("HEARTH_GATEWAY_CLOUD_MQTT", &app.mqtt_url),
            ("HEARTH_TOPIC_PREFIX", &prefix),
        ],
    )
    .await;
    // Every filter subscribed (1 down, 2 up), so the device's first status is relayed.
    gateway.wait_for_log("bridge subscribed", 3).await;
    let (output, _agent) = hearth_tests::spawn_actuator_on(&app, &lan.url(), &home, &fan);
    app.wait_for_device(&fan, Duration::from_secs(20), |d| d.online)
        .await;
    app.devices()
        .await
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::On as i32,
            requested_by: "test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.wait_for_device(&fan, Duration::from_secs(20), |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.applied_version == 1 && r.on)
    })
    .await;
    assert!(
        output.is_on(),
        "the fan on the LAN applied the cloud's desired state"
    );
}

/// Datagrams of every bad kind, interleaved with valid ones: each valid one
/// is stored, each bad one counted under its reason in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datagrams_are_counted_by_reason_and_do_not_stop_valid_ones() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    let gateway = TestGateway::spawn_with(
        &app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &[("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let base = hearth_agent::unix_ms_now() - 60_000;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let unnamed = ReadingBatch {
        device_id: String::new(),
        ..batch(&home, &sensor, 1, base)
    }
    .encode_to_vec();
    for seq in 1..=30 {
        for datagram in [
            vec![0xff, 0xff, 0xff],
            vec![0u8; 8 * 1024 + 1],
            unnamed.clone(),
            batch(&home, &sensor, seq, base).encode_to_vec(),
        ] {
            socket.send_to(&datagram, gateway.udp).await.unwrap();
        }
        // Why: loopback UDP drops when a socket buffer overflows (seen on a
        // loaded machine); pace like sensors would.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    wait_for_count(&app, &sensor, 30, &gateway).await;
    assert_exactly_once_in_order(&stored(&app, &sensor).await, 30, base);
    let body = gateway.metrics().await;
    for (name, value) in [
        ("hearth_gateway_datagrams_received_total", 120.0),
        ("hearth_gateway_accepted_batches_total", 30.0),
        ("hearth_gateway_accepted_readings_total", 30.0),
        ("hearth_gateway_dropped_total{reason=\"malformed\"}", 30.0),
        ("hearth_gateway_dropped_total{reason=\"oversize\"}", 30.0),
        ("hearth_gateway_dropped_total{reason=\"unnamed\"}", 30.0),
        ("hearth_gateway_dropped_total{reason=\"rate_limited\"}", 0.0),
        ("hearth_gateway_dropped_total{reason=\"queue_full\"}", 0.0),
    ] {
        assert_eq!(
            hearth_tests::metric_value(&body, name),
            Some(value),
            "{name} in\n{body}"
        );
    }
    assert!(
        gateway.logs().contains("is over 8192"),
        "an oversize datagram is logged as such:\n{}",
        gateway.logs()
    );
}

/// With the backend away, `/metrics` shows the backlog (batches, readings,
/// bytes, the oldest one's age); a gateway stopped with SIGTERM keeps it,
/// and the next one forwards it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_backlog_and_a_stopped_gateway_keeps_it() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    let nowhere = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let metrics = [("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")];
    let gateway = TestGateway::spawn_with(&nowhere, &data, "127.0.0.1:0", &metrics).await;
    // Batches of three readings, the oldest taken 90 s ago.
    let base = hearth_agent::unix_ms_now() - 90_000;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 1..=50 {
        let mut b = batch(&home, &sensor, seq, base);
        b.readings = [
            Metric::TemperatureCelsius,
            Metric::HumidityPercent,
            Metric::PressureHpa,
        ]
        .iter()
        .map(|m| Reading {
            metric: *m as i32,
            value: match m {
                Metric::PressureHpa => 1000.0 + seq as f64,
                _ => seq as f64,
            },
        })
        .collect();
        socket
            .send_to(&b.encode_to_vec(), gateway.udp)
            .await
            .unwrap();
    }
    gateway.wait_for_queued(50).await;
    let body = gateway.metrics().await;
    let value = |name| hearth_tests::metric_value(&body, name).expect(name);
    assert_eq!(value("hearth_gateway_queue_batches"), 50.0, "{body}");
    assert_eq!(value("hearth_gateway_queue_readings"), 150.0, "{body}");
    assert!(value("hearth_gateway_queue_bytes") > 50.0 * 8.0, "{body}");
    assert_eq!(value("hearth_gateway_forwarded_readings_total"), 0.0);
    let age = value("hearth_gateway_oldest_unsent_age_seconds");
    assert!((90.0..150.0).contains(&age), "oldest age {age} s:\n{body}");
    assert!(gateway.terminate().success(), "SIGTERM stops it cleanly");

    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &metrics).await;
    wait_for_count(&app, &sensor, 150, &gateway).await;
    let stored = stored(&app, &sensor).await;
    assert_eq!(stored.len(), 150);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gateway
        .metric("hearth_gateway_forwarded_readings_total")
        .await
        < 150.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            gateway.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = gateway.metrics().await;
    let value = |name| hearth_tests::metric_value(&body, name).expect(name);
    assert_eq!(value("hearth_gateway_queue_readings"), 0.0, "{body}");
    assert_eq!(
        value("hearth_gateway_oldest_unsent_age_seconds"),
        0.0,
        "{body}"
    );
}
