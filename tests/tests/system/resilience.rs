//! Losing the broker while running: Hearth reconnects, resubscribes, and
//! readings published after the broker is back are stored.

use std::time::Duration;

use futures::StreamExt as _;
use hearth_proto::v1::{DeviceKind, Metric, Reading, ReadingBatch, WatchReadingsRequest};
use hearth_tests::{unique, Backend, PrivateBroker, TestApp};
use tonic_health::pb::health_check_response::ServingStatus;

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
            ..Default::default()
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

/// All stored readings of `device`, by paging ListReadings.
async fn stored_seqs(app: &TestApp, device: &str) -> Vec<u64> {
    let mut api = app.telemetry().await;
    let (mut seqs, mut token) = (Vec::new(), String::new());
    loop {
        let page = api
            .list_readings(hearth_proto::v1::ListReadingsRequest {
                device_id: device.into(),
                page_size: 1_000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("ListReadings")
            .into_inner();
        seqs.extend(page.readings.iter().map(|r| r.seq));
        if page.next_page_token.is_empty() {
            return seqs;
        }
        token = page.next_page_token;
    }
}

/// A temperature reading numbered `seq`, taken `seq` ms after `base`.
fn temperature_at(base: i64, seq: u64) -> ReadingBatch {
    ReadingBatch {
        seq,
        time_unix_ms: base + seq as i64,
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: (seq % 100) as f64,
        }],
        ..Default::default()
    }
}

/// Waits up to 30 s for readings 1..=`total` of `device`, then checks that
/// each was stored exactly once.
async fn assert_every_reading_stored_once(app: &TestApp, device: &str, total: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seqs = stored_seqs(app, device).await;
    while seqs.len() < total as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seqs = stored_seqs(app, device).await;
    }
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=total).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} readings, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(seqs, expected, "each reading stored once");
}

/// Two replicas share a broker subscription. One is killed with SIGKILL in
/// the middle of a stream and comes back under its name: every reading
/// published with QoS 1 is stored, and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_loses_and_doubles_nothing() {
    let (name_a, name_b) = (unique("ingest-a"), unique("ingest-b"));
    let mut a = TestApp::spawn_with(
        Backend::External,
        &[("HEARTH_DEMO", "false"), ("HEARTH_REPLICA", &name_a)],
    )
    .await;
    let b = a.spawn_replica(Some(&name_b)).await;
    let sensor = unique("sensor");
    let home = a.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut device = b.connect_as_device(&sensor).await;
    const TOTAL: u64 = 2_000;
    let base = hearth_agent::unix_ms_now() - 10_000;
    let batch = |seq: u64| temperature_at(base, seq);
    for seq in 1..=TOTAL / 2 {
        device
            .publish_readings(&b.topics, &home, &sensor, &batch(seq))
            .await;
    }
    a.kill9();
    for seq in TOTAL / 2 + 1..=TOTAL {
        device
            .publish_readings(&b.topics, &home, &sensor, &batch(seq))
            .await;
    }
    // Back under its name, it gets what it had not acknowledged.
    let _a_again = b.spawn_replica(Some(&name_a)).await;

    assert_every_reading_stored_once(&b, &sensor, TOTAL).await;
}

/// gRPC health of the whole server and of each service, as a probe sees it.
async fn health(app: &TestApp) -> Vec<i32> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let channel = tonic::transport::Channel::from_shared(app.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connecting");
    let mut health = HealthClient::new(channel);
    let mut statuses = Vec::new();
    for service in [
        "",
        "hearth.v1.DeviceService",
        "hearth.v1.TelemetryService",
        "hearth.v1.AutomationService",
    ] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let answer = health.check(request).await.expect("health check");
        statuses.push(answer.into_inner().status);
    }
    statuses
}

/// Waits up to 30 s for every health status to be `status`.
async fn wait_for_health(app: &TestApp, status: ServingStatus) {
    let want = vec![status as i32; 4];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = health(app).await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {now:?}, not {status:?}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kubernetes takes a replica out of its Service on NOT_SERVING: health says
/// so while the broker is away, and SERVING again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_broker_is_away() {
    let broker = PrivateBroker::start().await;
    let (port, url) = (broker.port, broker.url());
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[("HEARTH_DEMO", "false"), ("HEARTH_MQTT_URL", &url)],
    )
    .await;
    wait_for_health(&app, ServingStatus::Serving).await;
    broker.stop();
    wait_for_health(&app, ServingStatus::NotServing).await;
    let _broker = PrivateBroker::start_on(port).await;
    wait_for_health(&app, ServingStatus::Serving).await;
}

/// A replica with only the web role takes no readings from the broker (an
/// ingest replica does), and serves the app; one without it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_choose_what_a_replica_takes_on() {
    let web = TestApp::spawn_with(
        Backend::Embedded,
        &[("HEARTH_DEMO", "false"), ("HEARTH_ROLES", "web")],
    )
    .await;
    assert!(web.logs().contains("roles=web"), "{}", web.logs());
    assert!(
        !web.logs().contains("lane=\"readings\"") && !web.logs().contains("-readings"),
        "a web replica subscribed to readings:\n{}",
        web.logs()
    );
    let ingest = TestApp::spawn_with(
        Backend::Embedded,
        &[("HEARTH_DEMO", "false"), ("HEARTH_ROLES", "ingest,control")],
    )
    .await;
    assert!(ingest.logs().contains("-readings"), "{}", ingest.logs());
    let page = hearth_tests::http_get(web.http, "/").await;
    assert!(page.to_lowercase().contains("<!doctype html"), "{page}");
    let none = hearth_tests::http_get(ingest.http, "/").await;
    assert!(!none.to_lowercase().contains("<!doctype html"), "{none}");
}

/// Whether the broker at `url` holds a persistent session for `client_id`
/// (asked by connecting under it without cleaning it, then leaving it as is).
async fn broker_has_session(url: &str, client_id: &str) -> bool {
    let mut options = rumqttc::MqttOptions::parse_url(format!("{url}?client_id={client_id}"))
        .expect("broker url");
    options.set_clean_session(false);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 8);
    let present = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) = events.poll().await
            {
                return ack.session_present;
            }
        }
    })
    .await
    .expect("the broker answers");
    let _ = client.disconnect().await;
    let _ = events.poll().await;
    present
}

/// Scaling down or rolling: a replica stopped with SIGTERM leaves the shared
/// subscription, stores and acknowledges what it holds and ends its session,
/// so every reading published after it left reaches the other replica, and
/// nothing waits in a session nobody will resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_sigterm_strands_nothing() {
    let broker = PrivateBroker::start().await;
    let (name_a, name_b) = (unique("ingest-a"), unique("ingest-b"));
    let mut a = TestApp::spawn_with(
        Backend::External,
        &[
            ("HEARTH_DEMO", "false"),
            ("HEARTH_REPLICA", &name_a),
            ("HEARTH_MQTT_URL", &broker.url()),
        ],
    )
    .await;
    let b = a.spawn_replica(Some(&name_b)).await;
    let sensor = unique("sensor");
    let home = a.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let mut device = b.connect_as_device(&sensor).await;
    const TOTAL: u64 = 1_000;
    let base = hearth_agent::unix_ms_now() - 10_000;
    let batch = |seq: u64| temperature_at(base, seq);
    for seq in 1..=TOTAL / 2 {
        device
            .publish_readings(&b.topics, &home, &sensor, &batch(seq))
            .await;
    }
    assert!(a.terminate().success(), "{}", a.logs());
    for seq in TOTAL / 2 + 1..=TOTAL {
        device
            .publish_readings(&b.topics, &home, &sensor, &batch(seq))
            .await;
    }

    assert_every_reading_stored_once(&b, &sensor, TOTAL).await;
    for lane in ["readings", "control"] {
        let client_id = format!("hearth-backend-{name_a}-{lane}");
        assert!(
            !broker_has_session(&broker.url(), &client_id).await,
            "the stopped replica's {lane} session is still on the broker:\n{}",
            a.logs()
        );
    }
}

/// Mosquitto drops a message past a session's queue limit and tells only its
/// `$SYS` counter: Hearth watches it, so a drop for any client (here a
/// subscriber that stopped reading) shows in `hearth_broker_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_at_the_broker_are_counted() {
    let broker = PrivateBroker::start_with_config(
        "max_inflight_messages 5\nmax_queued_messages 5\nsys_interval 1",
    )
    .await;
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[("HEARTH_DEMO", "false"), ("HEARTH_MQTT_URL", &broker.url())],
    )
    .await;
    let options = |id: &str| {
        rumqttc::MqttOptions::parse_url(format!("{}?client_id={}", broker.url(), unique(id)))
            .expect("broker url")
    };
    // A subscriber that stops reading (and so acknowledging) after its SUBACK.
    let (slow, mut slow_events) = rumqttc::AsyncClient::new(options("slow"), 8);
    let topic = unique("slow");
    slow.subscribe(&topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) =
            slow_events.poll().await.expect("subscribing")
        {
            break;
        }
    }
    let (publisher, mut events) = rumqttc::AsyncClient::new(options("fast"), 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // Why publish in rounds: drops before Hearth first read the counter are
    // its baseline, not counted; later rounds are.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.metric("hearth_broker_dropped_total").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no drop counted:\n{}",
            app.metrics().await
        );
        for i in 0..20u32 {
            let payload = i.to_be_bytes().to_vec();
            let qos = rumqttc::QoS::AtLeastOnce;
            publisher
                .publish(&topic, qos, false, payload)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(app.logs().contains("the MQTT broker dropped messages"));
    drop(slow);
}
