//! The LAN path: a sensor's signed UDP datagrams → `hearth-gateway`
//! (durable queue) → the backend. Nothing the gateway accepted is lost when
//! the backend or the gateway itself goes away; bad datagrams are counted by
//! reason and do not hold up good ones; forged and replayed ones are refused,
//! also after a restart; `/metrics` shows all of it.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use futures::StreamExt as _;
use hearth_proto::{
    signing::DeviceKey,
    v1::{DeviceKind, Metric, Reading, ReadingBatch, StoredReading, WatchReadingsRequest},
};
use hearth_tests::{both, unique, Backend, TempDir, TestApp, TestGateway};
use prost::Message as _;

/// Sensors' keys and the gateway's keys file listing them, as an operator
/// makes them (`openssl rand -hex 32` per device).
struct Keys {
    _dir: TempDir,
    /// The keys file's path.
    file: String,
}

impl Keys {
    /// A fresh random key for each of `devices`, in a keys file.
    fn new(devices: &[&str]) -> (Self, Vec<DeviceKey>) {
        let dir = TempDir::new();
        let mut text = String::from("# DEVICE_ID KEY\n");
        let mut keys = Vec::new();
        for device in devices {
            let bytes: [u8; 32] = rand::random();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            text.push_str(&format!("{device} {hex}\n"));
            keys.push(DeviceKey::from_bytes(bytes));
        }
        let file = dir.0.join("gateway-keys");
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        (Self { _dir: dir, file }, keys)
    }

    /// The gateway's environment: this keys file, and `extra`.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![("HEARTH_GATEWAY_KEYS_FILE", self.file.as_str())];
        env.extend_from_slice(extra);
        env
    }
}

/// A random key that no keys file lists: a forger's.
fn forger_key() -> DeviceKey {
    DeviceKey::from_bytes(rand::random())
}

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
        ..Default::default()
    }
}

/// Sends `sensor`'s batches numbered `seqs`, signed with `key`.
async fn send(
    to: SocketAddr,
    key: &DeviceKey,
    home: &str,
    sensor: &str,
    seqs: std::ops::RangeInclusive<u64>,
    base: i64,
) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in seqs {
        socket
            .send_to(
                &key.seal(batch(home, sensor, seq, base).encode_to_vec()),
                to,
            )
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
    let (keys, key) = Keys::new(&[&sensor]);
    let gateway =
        TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &keys.env(&[])).await;

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&[0xff, 0xff, 0xff], gateway.udp)
        .await
        .unwrap();
    send(
        gateway.udp,
        &key[0],
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
    let (keys, key) = Keys::new(&[&sensor]);
    let key = &key[0];
    let gateway =
        TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &keys.env(&[])).await;
    let base = hearth_agent::unix_ms_now() - 60_000;

    send(gateway.udp, key, &home, &sensor, 1..=100, base).await;
    wait_for_count(&app, &sensor, 100, &gateway).await;
    // Stop the backend; readings sent meanwhile wait in the gateway's queue.
    assert!(app.terminate().success());
    send(gateway.udp, key, &home, &sensor, 101..=300, base).await;
    gateway.wait_for_queued(200).await;
    app.restart().await;
    send(gateway.udp, key, &home, &sensor, 301..=400, base).await;
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
    let (keys, key) = Keys::new(&[&sensor]);
    let env = keys.env(&[]);
    let gateway = TestGateway::spawn_with(&nowhere, &data, "127.0.0.1:0", &env).await;
    let base = hearth_agent::unix_ms_now() - 60_000;
    send(gateway.udp, &key[0], &home, &sensor, 1..=300, base).await;
    gateway.wait_for_queued(300).await;
    gateway.kill();

    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &env).await;
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
    let (keys, key) = Keys::new(&[&sensor]);
    let gateway = TestGateway::spawn_with(
        &app.grpc_url(),
        &data,
        "127.0.0.1:0",
        &keys.env(&[("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")]),
    )
    .await;
    let base = hearth_agent::unix_ms_now() - 60_000;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let unnamed = key[0].seal(
        ReadingBatch {
            device_id: String::new(),
            ..batch(&home, &sensor, 1, base)
        }
        .encode_to_vec(),
    );
    for seq in 1..=30 {
        for datagram in [
            vec![0xff, 0xff, 0xff],
            vec![0u8; 8 * 1024 + 1],
            unnamed.clone(),
            key[0].seal(batch(&home, &sensor, seq, base).encode_to_vec()),
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
    let (keys, key) = Keys::new(&[&sensor]);
    let metrics = keys.env(&[("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")]);
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
            .send_to(&key[0].seal(b.encode_to_vec()), gateway.udp)
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

/// Issue 14: a host on the LAN can neither forge a sensor's readings nor
/// replay them. Among a genuine sensor's datagrams: forged ones (another key,
/// with other values), exact resends of captured genuine ones, a bare
/// unsigned batch and one signed for a device with no key. Only the genuine
/// readings are stored, each once with its own value; every other datagram is
/// counted under its reason and logged, the log rate-limited under a flood;
/// and a captured datagram is still refused after the gateway restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_datagrams_are_refused_and_counted() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    let (keys, key) = Keys::new(&[&sensor]);
    let key = &key[0];
    let env = keys.env(&[("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")]);
    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &env).await;
    let base = hearth_agent::unix_ms_now() - 60_000;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sealed = |seq| key.seal(batch(&home, &sensor, seq, base).encode_to_vec());

    // The genuine sensor's first ten; the attacker captures them on the LAN.
    let captured: Vec<Vec<u8>> = (1..=10).map(sealed).collect();
    for datagram in &captured {
        socket.send_to(datagram, gateway.udp).await.unwrap();
    }
    wait_for_count(&app, &sensor, 10, &gateway).await;

    // Forgeries of the next numbers, with values of the attacker's choosing.
    let forger = forger_key();
    for seq in 11..=15 {
        let forged = ReadingBatch {
            readings: vec![Reading {
                metric: Metric::TemperatureCelsius as i32,
                value: 99.0,
            }],
            ..batch(&home, &sensor, seq, base)
        };
        socket
            .send_to(&forger.seal(forged.encode_to_vec()), gateway.udp)
            .await
            .unwrap();
    }
    // Exact resends of captured datagrams, a bare batch, an unknown device.
    for datagram in &captured[2..6] {
        socket.send_to(datagram, gateway.udp).await.unwrap();
    }
    socket
        .send_to(
            &batch(&home, &sensor, 16, base).encode_to_vec(),
            gateway.udp,
        )
        .await
        .unwrap();
    socket
        .send_to(
            &forger.seal(batch(&home, "ghost", 1, base).encode_to_vec()),
            gateway.udp,
        )
        .await
        .unwrap();
    // Then the genuine sensor goes on, with the numbers the forger used.
    for seq in 11..=20 {
        socket.send_to(&sealed(seq), gateway.udp).await.unwrap();
    }
    wait_for_count(&app, &sensor, 20, &gateway).await;
    assert_exactly_once_in_order(&stored(&app, &sensor).await, 20, base);
    let values: Vec<f64> = stored(&app, &sensor)
        .await
        .iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(
        values,
        (1..=20)
            .map(|seq| 20.0 + seq as f64 / 100.0)
            .collect::<Vec<_>>(),
        "only the genuine values are stored"
    );
    let body = gateway.metrics().await;
    for (name, value) in [
        ("hearth_gateway_datagrams_received_total", 31.0),
        ("hearth_gateway_accepted_batches_total", 20.0),
        (
            "hearth_gateway_dropped_total{reason=\"bad_signature\"}",
            5.0,
        ),
        ("hearth_gateway_dropped_total{reason=\"replay\"}", 4.0),
        ("hearth_gateway_dropped_total{reason=\"unsigned\"}", 1.0),
        (
            "hearth_gateway_dropped_total{reason=\"unknown_device\"}",
            1.0,
        ),
        ("hearth_gateway_dropped_total{reason=\"malformed\"}", 0.0),
    ] {
        assert_eq!(
            hearth_tests::metric_value(&body, name),
            Some(value),
            "{name} in\n{body}"
        );
    }
    let logs = gateway.logs();
    for needle in [
        format!("signature does not match the key of device \"{sensor}\""),
        format!("device \"{sensor}\"'s seq 3 was taken before"),
        "reason=\"unsigned\"".to_owned(),
        "device \"ghost\" has no key".to_owned(),
    ] {
        assert!(logs.contains(&needle), "no {needle} in the log:\n{logs}");
    }
    assert!(
        logs.contains("from=127.0.0.1:"),
        "the sender is named:\n{logs}"
    );

    // A flood of forgeries: each counted, the log rate-limited.
    let logged_before = gateway.logs().matches("datagram dropped").count();
    for i in 0..400u64 {
        socket
            .send_to(
                &forger.seal(batch(&home, &sensor, 100 + i, base).encode_to_vec()),
                gateway.udp,
            )
            .await
            .unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gateway
        .metric("hearth_gateway_dropped_total{reason=\"bad_signature\"}")
        .await
        < 405.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            gateway.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = gateway.logs().matches("datagram dropped").count() - logged_before;
    assert!(
        logged < 40,
        "{logged} log lines for 400 forged datagrams:\n{}",
        gateway.logs()
    );

    // Restarted, the gateway still knows what it took.
    assert!(gateway.terminate().success());
    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &env).await;
    for datagram in &captured {
        socket.send_to(datagram, gateway.udp).await.unwrap();
    }
    socket.send_to(&sealed(21), gateway.udp).await.unwrap();
    wait_for_count(&app, &sensor, 21, &gateway).await;
    let body = gateway.metrics().await;
    for (name, value) in [
        ("hearth_gateway_accepted_batches_total", 1.0),
        ("hearth_gateway_dropped_total{reason=\"replay\"}", 10.0),
    ] {
        assert_eq!(
            hearth_tests::metric_value(&body, name),
            Some(value),
            "{name} after a restart in\n{body}"
        );
    }
    assert_exactly_once_in_order(&stored(&app, &sensor).await, 21, base);
}

/// Without a keys file the gateway starts only on loopback, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_keys_refuses_to_listen_beyond_loopback() {
    let data = TempDir::new();
    let output =
        std::process::Command::new(hearth_tests::binary("hearth-gateway", "hearth-gateway"))
            .env("HEARTH_GATEWAY_UDP", "0.0.0.0:0")
            .env("HEARTH_GATEWAY_DATA", &data.0)
            .env_remove("HEARTH_GATEWAY_KEYS_FILE")
            .output()
            .expect("running hearth-gateway");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HEARTH_GATEWAY_KEYS_FILE is not set, and HEARTH_GATEWAY_UDP=0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
}
