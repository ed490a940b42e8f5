//! Loss you can see: a stock Mosquitto (its default queue of 1,000 messages
//! per client) drops what a stalled Hearth cannot take, every publish having
//! been acknowledged to the device; Hearth's delivery figures still account
//! for every reading sent, in `GetDelivery`, `/metrics` and its log, whether
//! the sensor's next batch shows the gap or the sensor stops and only its
//! word (the `last_seq` of its status) says what it sent.

use std::time::Duration;

use hearth_proto::{
    topics::Channel,
    v1::{
        telemetry_service_client::TelemetryServiceClient, DeliveryFigures, DeviceKind,
        DeviceStatus, Metric, Reading, ReadingBatch,
    },
};
use hearth_tests::{
    delivery_of, metric_value, Backend, PrivateBroker, TempDir, TestAgent, TestApp,
};
use prost::Message as _;

const SENSOR: &str = "sensor";
/// Batches sent while Hearth is stalled: well past the broker's queue.
const STALLED: u64 = 3_000;
/// Every batch sent: those, and one after Hearth goes on.
const SENT: u64 = STALLED + 1;
/// Readings per batch.
const METRICS: u64 = 2;
/// Readings per batch of the agent's simulated sensor.
const SIM_METRICS: u64 = 3;

fn batch(seq: u64) -> ReadingBatch {
    ReadingBatch {
        seq,
        run_start: 1,
        time_unix_ms: hearth_agent::unix_ms_now(),
        readings: vec![
            Reading {
                metric: Metric::TemperatureCelsius as i32,
                value: 21.0,
            },
            Reading {
                metric: Metric::HumidityPercent as i32,
                value: 40.0,
            },
        ],
        ..Default::default()
    }
}

/// The sensor's delivery once two answers 2 s apart agree (everything that
/// reached Hearth is stored by then).
async fn settled(
    telemetry: &mut TelemetryServiceClient<tonic::transport::Channel>,
) -> DeliveryFigures {
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let figures = delivery_of(telemetry, SENSOR).await;
        if last.as_ref() == Some(&figures) {
            return figures;
        }
        last = Some(figures);
    }
}

/// A stock Mosquitto of the test's own, `hearth` on it (with MariaDB), and
/// a home with the sensor.
async fn a_sensor_on_a_stock_broker() -> (PrivateBroker, TestApp, String) {
    let broker = PrivateBroker::start().await;
    let app = TestApp::spawn_with(
        Backend::External,
        &[("HEARTH_DEMO", "false"), ("HEARTH_MQTT_URL", &broker.url())],
    )
    .await;
    let home = app.home_with(&[(SENSOR, DeviceKind::Sensor)]).await;
    (broker, app, home)
}

/// How the sensor shows, after the stall, what it had sent.
enum Afterwards {
    /// It goes on: its next batch shows where the dropped ones were.
    SendsAgain,
    /// It stops: its offline status says the last number it sent.
    SaysWhatItSentAndStops,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_a_stock_broker_drops_are_counted_and_stored_plus_missing_is_sent() {
    a_stall_is_accounted_for(Afterwards::SendsAgain).await;
}

/// The drop is at the end of what the sensor sent (the broker drops the
/// newest): without the sensor's word, no later number would show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_that_stops_after_a_drop_says_what_it_sent_and_the_lost_end_is_counted() {
    a_stall_is_accounted_for(Afterwards::SaysWhatItSentAndStops).await;
}

async fn a_stall_is_accounted_for(afterwards: Afterwards) {
    let (broker, app, home) = a_sensor_on_a_stock_broker().await;
    let mut device = app.connect_as_device(SENSOR).await;

    // Hearth stalls (a long GC pause, a database that hangs): the broker
    // queues for it, then drops, acknowledging every publish to the device.
    app.pause();
    for seq in 1..=STALLED {
        device
            .publish_readings(&app.topics, &home, SENSOR, &batch(seq))
            .await;
    }
    app.resume();
    let mut telemetry = app.telemetry().await;
    let before = settled(&mut telemetry).await;
    let sent = match afterwards {
        Afterwards::SendsAgain => {
            device
                .publish_readings(&app.topics, &home, SENSOR, &batch(SENT))
                .await;
            SENT
        }
        Afterwards::SaysWhatItSentAndStops => {
            assert!(
                before.expected < STALLED * METRICS,
                "the broker dropped the newest, so the stored numbers alone \
                 do not show the loss: {before:?}"
            );
            let offline = DeviceStatus {
                online: false,
                run_start: 1,
                last_seq: STALLED,
                ..Default::default()
            };
            let topic = app.topics.device(&home, SENSOR, Channel::Status).unwrap();
            device.publish(&topic, offline.encode_to_vec()).await;
            STALLED
        }
    };
    let figures = settled(&mut telemetry).await;
    eprintln!("delivery after the stall: {figures:?}");
    assert_eq!(
        figures.stored + figures.missing,
        sent * METRICS,
        "stored + missing = sent: {figures:?}"
    );
    assert_eq!(figures.expected, sent * METRICS, "{figures:?}");
    assert!(
        figures.missing > 0,
        "the stock queue holds 1,000 messages; {STALLED} were sent to a stalled Hearth: {figures:?}"
    );
    let stored = app.stored_readings(SENSOR).await.len() as u64;
    assert_eq!(stored, figures.stored, "the figures count what is stored");

    // The audit counts the same loss into /metrics, and logs it by device.
    let series = format!("hearth_readings_missing_total{{home=\"{home}\"}}");
    let counted = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let counted = metric_value(&app.metrics().await, &series).unwrap_or(0.0);
            if counted >= figures.missing as f64 {
                return counted;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{series} never reached {}:\n{}",
            figures.missing,
            app.logs()
        )
    });
    assert_eq!(counted, figures.missing as f64);
    let expected_series = format!("hearth_readings_expected_total{{home=\"{home}\"}}");
    assert_eq!(
        metric_value(&app.metrics().await, &expected_series),
        Some((sent * METRICS) as f64)
    );
    assert!(
        app.logs().contains("readings missing"),
        "the loss is logged:\n{}",
        app.logs()
    );
    broker.stop();
}

/// The real agent crashes (SIGKILL) while Hearth is stalled, so the broker
/// drops the end of its run and no offline status says what it sent; its
/// account file (`{device}.sent` in its state directory) outlives the crash,
/// and the restarted agent says it. Every reading either run numbered is
/// stored or counted missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_crashed_says_at_restart_what_it_sent_and_the_lost_end_is_counted() {
    let (broker, app, home) = a_sensor_on_a_stock_broker().await;
    let state = TempDir::new();
    let mut env = TestAgent::mqtt_env(&app, &home, SENSOR);
    let state_dir = state.0.to_str().unwrap().to_owned();
    env.extend([
        ("HEARTH_AGENT_INTERVAL_MS", "1"),
        ("HEARTH_AGENT_STATE_DIR", state_dir.as_str()),
    ]);
    let account = state.0.join(format!("{SENSOR}.sent"));
    // What a run numbered, as its account file says: (run_start, last).
    let numbered = || {
        let text = std::fs::read_to_string(&account).expect("the agent's account file");
        let (start, last) = text.trim().split_once(' ').expect("run_start last");
        let (start, last): (u64, u64) = (start.parse().unwrap(), last.parse().unwrap());
        (start, last)
    };

    let mut agent = TestAgent::spawn(&env).await;
    // Connected (some of its batches stored) before Hearth stalls.
    let mut telemetry = app.telemetry().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivery_of(&mut telemetry, SENSOR).await.stored < 10 * SIM_METRICS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.pause();
    // Well past the broker's queue of 1,000 messages for Hearth.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if std::fs::metadata(&account).is_ok() {
            let (start, last) = numbered();
            if last - start + 1 >= STALLED {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent numbers batches"
        );
    }
    agent.kill9();
    let (start, last) = numbered();
    let first_run = last - start + 1;
    app.resume();
    let before = settled(&mut telemetry).await;
    // Usually the broker dropped the end of the run, so nothing shows it
    // yet; not always: Hearth's shared group spreads messages over several
    // sessions, and the last may land in one with room.
    eprintln!(
        "before the restart: {before:?}, of {} numbered",
        first_run * SIM_METRICS
    );

    // Restarted: it says what the crashed run sent, then runs and stops
    // cleanly, slowly enough that the stock queue drops nothing of it (its
    // statuses included).
    env.retain(|(name, _)| *name != "HEARTH_AGENT_INTERVAL_MS");
    env.push(("HEARTH_AGENT_INTERVAL_MS", "50"));
    let agent = TestAgent::spawn(&env).await;
    // Connected once ten of its new run's batches are stored (on a busy
    // machine that takes longer than any fixed wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivery_of(&mut telemetry, SENSOR).await.stored < before.stored + 10 * SIM_METRICS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted agent's run seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.terminate().success(), "the agent stops cleanly");
    let (second_start, second_last) = numbered();
    assert!(second_start > last, "a new run");
    let sent = first_run + (second_last - second_start + 1);
    let figures = settled(&mut telemetry).await;
    eprintln!("delivery after the crash: {figures:?}");
    assert_eq!(figures.expected, sent * SIM_METRICS, "{figures:?}");
    assert_eq!(
        figures.stored + figures.missing,
        sent * SIM_METRICS,
        "stored + missing = sent: {figures:?}"
    );
    assert!(figures.missing > 0, "{figures:?}");
    assert_eq!(
        app.stored_readings(SENSOR).await.len() as u64,
        figures.stored,
        "the figures count what is stored"
    );
    broker.stop();
}

/// A sensor Hearth never stored a reading of says its run sent ten batches
/// of two metrics, all lost: only the metrics its status names tell the
/// audit that those streams exist, so without them nothing would be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lost_whole_is_counted_for_the_metrics_its_status_names() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let home = app.home_with(&[(SENSOR, DeviceKind::Sensor)]).await;
    let mut device = app.connect_as_device(SENSOR).await;
    let offline = DeviceStatus {
        online: false,
        run_start: 1,
        last_seq: 10,
        metrics: vec![
            Metric::TemperatureCelsius as i32,
            Metric::HumidityPercent as i32,
        ],
        ..Default::default()
    };
    let topic = app.topics.device(&home, SENSOR, Channel::Status).unwrap();
    device.publish(&topic, offline.encode_to_vec()).await;

    let lost = 10 * METRICS;
    let series = format!("hearth_readings_missing_total{{home=\"{home}\"}}");
    // The audit counts a status once it is 10 s old, in rounds 15 s apart.
    tokio::time::timeout(Duration::from_secs(60), async {
        while metric_value(&app.metrics().await, &series) != Some(lost as f64) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{series} never reached {lost}:\n{}", app.logs()));
    let figures = delivery_of(&mut app.telemetry().await, SENSOR).await;
    assert_eq!(
        (figures.expected, figures.missing),
        (lost, lost),
        "{figures:?}"
    );
}
