//! The edge end to end with the real `hearth-agent` binary: a simulated
//! sensor sends UDP datagrams to `hearth-gateway`, which forwards them to
//! `hearth`; its sequence numbers keep growing across a restart, and what a
//! run sent reaches Hearth through the gateway too. A simulated
//! actuator that was offline while its desired state changed applies the
//! latest one when it is back.

use std::time::Duration;

use hearth_proto::v1::{DeviceKind, Metric, Mode, SetModeRequest, StoredReading};
use hearth_tests::{both, delivery_of, unique, Backend, TempDir, TestAgent, TestApp, TestGateway};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `device` has more than `n` stored readings.
async fn wait_for_more_than(app: &TestApp, device: &str, n: usize, gateway: &TestGateway) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.stored_readings(device).await.len() <= n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no more than {n} readings stored; gateway:\n{}\nhearth:\n{}",
            gateway.logs(),
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the gateway has forwarded everything it accepted; returns
/// the readings forwarded.
async fn wait_for_drained(gateway: &TestGateway) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = gateway.metrics().await;
        let value = |name| hearth_tests::metric_value(&body, name).expect(name);
        let forwarded = value("hearth_gateway_forwarded_readings_total");
        if value("hearth_gateway_queue_batches") == 0.0
            && value("hearth_gateway_accepted_readings_total") == forwarded
        {
            return forwarded;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never drained:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sequence numbers of `readings`, each once, checking that every batch
/// holds the three metrics of a simulated Sense HAT.
fn batches(readings: &[StoredReading]) -> Vec<u64> {
    let mut seqs: Vec<u64> = readings.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    for seq in &seqs {
        let mut metrics: Vec<i32> = readings
            .iter()
            .filter(|r| r.seq == *seq)
            .map(|r| r.metric)
            .collect();
        metrics.sort_unstable();
        assert_eq!(
            metrics,
            [
                Metric::TemperatureCelsius as i32,
                Metric::HumidityPercent as i32,
                Metric::PressureHpa as i32
            ],
            "batch {seq}: each metric exactly once"
        );
    }
    seqs
}

async fn a_simulated_sensor_reaches_storage_over_udp_through_the_gateway(backend: Backend) {
    let app = TestApp::spawn(backend).await;
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
    // A sequence bound far above the clock, as a run with a clock that was
    // ahead would leave: the agent must continue above it, not at the clock.
    let state = TempDir::new();
    let bound = hearth_agent::unix_ms_now() as u64 + 1_000_000_000_000;
    std::fs::write(state.0.join(format!("{sensor}.seq")), format!("{bound}\n")).unwrap();
    let udp = gateway.udp.to_string();
    let env = [
        ("HEARTH_AGENT_HOME", home.as_str()),
        ("HEARTH_AGENT_DEVICE", sensor.as_str()),
        ("HEARTH_AGENT_TRANSPORT", "udp"),
        ("HEARTH_AGENT_GATEWAY_UDP", udp.as_str()),
        ("HEARTH_AGENT_INTERVAL_MS", "50"),
        ("HEARTH_AGENT_TEMPERATURE", "steady:22.5"),
        ("HEARTH_AGENT_STATE_DIR", state.0.to_str().unwrap()),
    ];

    let agent = TestAgent::spawn(&env).await;
    wait_for_more_than(&app, &sensor, 3 * 5, &gateway).await;
    assert!(agent.terminate().success(), "the agent stops cleanly");
    wait_for_drained(&gateway).await;
    let first = app.stored_readings(&sensor).await;
    let first_seqs = batches(&first);
    assert!(
        first_seqs[0] > bound,
        "numbers continue above the recorded bound {bound}: {first_seqs:?}"
    );
    assert_eq!(
        first_seqs,
        (first_seqs[0]..first_seqs[0] + first_seqs.len() as u64).collect::<Vec<_>>(),
        "consecutive, none lost on the way"
    );
    assert!(first.iter().all(|r| r.device_id == sensor));
    assert!(
        first
            .iter()
            .filter(|r| r.metric == Metric::TemperatureCelsius as i32)
            .all(|r| r.value == 22.5),
        "the scripted temperature arrives as sent"
    );

    // Restarted, it numbers above everything it sent before.
    let agent = TestAgent::spawn(&env).await;
    wait_for_more_than(&app, &sensor, first.len() + 3 * 5, &gateway).await;
    assert!(agent.terminate().success());
    let forwarded = wait_for_drained(&gateway).await;
    let all = app.stored_readings(&sensor).await;
    let all_seqs = batches(&all);
    let last_before = *first_seqs.last().unwrap();
    let after: Vec<u64> = all_seqs
        .iter()
        .copied()
        .filter(|s| !first_seqs.contains(s))
        .collect();
    assert_eq!(
        all_seqs.len(),
        first_seqs.len() + after.len(),
        "the first run's readings are all still there"
    );
    assert!(
        after.iter().all(|s| *s > last_before),
        "after a restart every number is above {last_before}: {after:?}"
    );
    assert_eq!(
        forwarded,
        all.len() as f64,
        "the gateway counts what it forwarded"
    );
}
both!(a_simulated_sensor_reaches_storage_over_udp_through_the_gateway);

async fn an_actuator_that_was_offline_applies_the_latest_desired_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fan = unique("fan");
    let home = app.home_with(&[(&fan, DeviceKind::Fan)]).await;
    let mut env = TestAgent::mqtt_env(&app, &home, &fan);
    env.push(("HEARTH_AGENT_ROLE", "actuator"));
    let mut api = app.devices().await;
    let mut set_mode = async |mode: Mode| {
        api.set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: mode as i32,
            requested_by: "test".into(),
            ..Default::default()
        })
        .await
        .expect("SetMode")
    };

    let agent = TestAgent::spawn(&env).await;
    app.wait_for_device(&fan, WAIT, |d| d.online).await;
    set_mode(Mode::On).await;
    app.wait_for_device(&fan, WAIT, |d| {
        d.reported
            .as_ref()
            .is_some_and(|r| r.applied_version == 1 && r.on)
    })
    .await;
    assert!(agent.terminate().success());
    app.wait_for_device(&fan, WAIT, |d| !d.online).await;

    // Two changes while it is away: off (version 2), then on again (3).
    set_mode(Mode::Off).await;
    set_mode(Mode::On).await;
    let agent = TestAgent::spawn(&env).await;
    app.wait_for_device(&fan, WAIT, |d| {
        d.online
            && d.reported
                .as_ref()
                .is_some_and(|r| r.applied_version == 3 && r.on)
    })
    .await;
    let logs = agent.logs();
    assert!(
        logs.contains("applied desired state") && !logs.contains("version=2"),
        "only the latest state is applied, not the missed one:\n{logs}"
    );
}
both!(an_actuator_that_was_offline_applies_the_latest_desired_state);

/// `{device}.sent` in an agent's state directory: `(run_start, last)`.
fn account_file(state: &TempDir, device: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(state.0.join(format!("{device}.sent"))).ok()?;
    let (start, last) = text.trim().split_once(' ')?;
    Some((start.parse().ok()?, last.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_sensor_whose_last_datagrams_were_lost_says_so_through_the_gateway() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sensor = unique("sensor");
    let home = app.home_with(&[(&sensor, DeviceKind::Sensor)]).await;
    let data = TempDir::new();
    let metrics = [("HEARTH_GATEWAY_METRICS_LISTEN", "127.0.0.1:0")];
    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &metrics).await;
    let state = TempDir::new();
    let env = |udp: &str| {
        [
            ("HEARTH_AGENT_HOME", home.clone()),
            ("HEARTH_AGENT_DEVICE", sensor.clone()),
            ("HEARTH_AGENT_TRANSPORT", "udp".into()),
            ("HEARTH_AGENT_GATEWAY_UDP", udp.to_owned()),
            ("HEARTH_AGENT_INTERVAL_MS", "50".into()),
            ("HEARTH_AGENT_STATE_DIR", state.0.to_str().unwrap().into()),
        ]
    };
    let spawn = |env: [(&'static str, String); 6]| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TestAgent::spawn(&env).await
    };
    let agent = spawn(env(&gateway.udp.to_string())).await;
    wait_for_more_than(&app, &sensor, 3 * 5, &gateway).await;

    // The gateway goes away; the sensor's next datagrams, and the account
    // it sends as it stops, are lost on the way.
    assert!(gateway.terminate().success());
    let (run_start, went_on_to) = account_file(&state, &sensor).expect("the run's account");
    let deadline = tokio::time::Instant::now() + WAIT;
    while account_file(&state, &sensor).is_none_or(|(_, last)| last < went_on_to + 5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent stopped sending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agent.terminate().success());
    let (_, said) = account_file(&state, &sensor).unwrap();

    // Back: the gateway forwards what it had kept, and the agent, started
    // again, says what its last run sent before anything else.
    let gateway = TestGateway::spawn_with(&app.grpc_url(), &data, "127.0.0.1:0", &metrics).await;
    let agent = spawn(env(&gateway.udp.to_string())).await;
    let accounts_forwarded = |n: f64| {
        let gateway = &gateway;
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while gateway
                .metric("hearth_gateway_forwarded_accounts_total")
                .await
                < n
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not {n} accounts forwarded; gateway:\n{}\nhearth:\n{}",
                    gateway.logs(),
                    app.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    accounts_forwarded(1.0).await;
    // This run's own account, sent as it stops after its last batch, comes
    // last: once it is forwarded, every batch of the run is.
    assert!(agent.terminate().success());
    accounts_forwarded(2.0).await;
    wait_for_drained(&gateway).await;

    let stored = batches(&app.stored_readings(&sensor).await);
    let first_run_stored = stored
        .iter()
        .copied()
        .filter(|s| (run_start..=said).contains(s))
        .max()
        .expect("some of the first run stored");
    assert!(first_run_stored < said, "the end of the first run was lost");
    let lost = 3 * (said - first_run_stored);
    let figures = delivery_of(&mut app.telemetry().await, &sensor).await;
    assert_eq!(
        figures.missing,
        lost,
        "the three metrics of batches {}..={said}, which only the account tells of: {figures:?}",
        first_run_stored + 1
    );
    assert_eq!(figures.expected, figures.stored + figures.missing);
}
