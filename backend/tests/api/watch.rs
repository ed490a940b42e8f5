//! Live streams that miss nothing: `WatchReadings` resumed after a lost
//! stream (`since_unix_ms` replays what was stored while the client was
//! away, then the stream goes live), and `WatchDevices` showing a change
//! that no news from another replica brought.

use hearth_proto::v1::{
    telemetry_service_client::TelemetryServiceClient, CreateHomeRequest, DeviceKind, Metric, Mode,
    ReadingBatch, RegisterDeviceRequest, SetModeRequest, WatchDevicesRequest, WatchReadingsRequest,
    WatchReadingsResponse,
};
use tonic::{transport::Channel, Code, Streaming};

use crate::{
    export::{app_with_a_sensor, batch, ingest, T0},
    helpers::{spawn_app, spawn_app_with, FAN, HOME, PATIENCE, SENSOR},
};

/// Batch `seq` of the sensor, taken `seq` seconds after an hour before T0,
/// with a temperature and a humidity.
fn numbered(seq: u64) -> ReadingBatch {
    batch(
        seq,
        T0 - 3_600_000 + seq as i64 * 1_000,
        &[
            (Metric::TemperatureCelsius, 20.0 + seq as f64 / 100.0),
            (Metric::HumidityPercent, 40.0),
        ],
    )
}

async fn watch(
    telemetry: &mut TelemetryServiceClient<Channel>,
    request: WatchReadingsRequest,
) -> Streaming<WatchReadingsResponse> {
    telemetry
        .watch_readings(request)
        .await
        .expect("the stream opens")
        .into_inner()
}

async fn next(stream: &mut Streaming<WatchReadingsResponse>) -> WatchReadingsResponse {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message within the patience")
        .expect("no error")
        .expect("the stream goes on")
}

/// The replayed messages, then the first live one.
async fn replay_then_live(
    stream: &mut Streaming<WatchReadingsResponse>,
) -> (Vec<WatchReadingsResponse>, WatchReadingsResponse) {
    let mut replayed = Vec::new();
    loop {
        let message = next(stream).await;
        if !message.replayed {
            return (replayed, message);
        }
        replayed.push(message);
    }
}

#[tokio::test]
async fn a_resuming_watcher_gets_what_was_stored_while_it_was_away_then_live() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    // 1,500 batches: more than one page of replay (1,000 readings).
    ingest(&mut telemetry, (1..=1_500).map(numbered).collect()).await;

    // The client saw up to batch 700 and asks from its time.
    let since = numbered(700).time_unix_ms;
    let mut stream = watch(
        &mut telemetry,
        WatchReadingsRequest {
            home_id: HOME.into(),
            since_unix_ms: since,
            ..Default::default()
        },
    )
    .await;
    // Batch 1,501 is stored after the stream opened: it comes live.
    ingest(&mut telemetry, vec![numbered(1_501)]).await;
    let (replayed, live) = replay_then_live(&mut stream).await;

    assert!(replayed.len() > 1, "paged: {} messages", replayed.len());
    let keys: Vec<(i32, u64)> = replayed
        .iter()
        .flat_map(|m| &m.readings)
        .map(|r| (r.metric, r.seq))
        .collect();
    let mut expected: Vec<(i32, u64)> = (700..=1_500)
        .flat_map(|seq| {
            [
                (Metric::TemperatureCelsius as i32, seq),
                (Metric::HumidityPercent as i32, seq),
            ]
        })
        .collect();
    // Batch 1,501 may be in the replay too: it can commit before the replay
    // reads (the overlap a client keys away).
    let mut got: Vec<_> = keys.iter().copied().filter(|k| k.1 <= 1_500).collect();
    got.sort_unstable();
    expected.sort_unstable();
    let count = got.len();
    got.dedup();
    assert_eq!(count, got.len(), "no reading replayed twice");
    assert!(got == expected, "every reading taken since, once");
    assert!(
        replayed
            .iter()
            .flat_map(|m| &m.readings)
            .map(|r| r.time_unix_ms)
            .is_sorted(),
        "oldest first"
    );
    assert_eq!(
        live.readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1_501, 1_501]
    );
    app.stop().await;
}

/// A batch sent again (a gateway's replay, a device's resend) is stored
/// once and shown once: live streams, and automation on the same feed, do
/// not see its readings a second time.
#[tokio::test]
async fn a_batch_sent_again_is_not_news_to_a_live_stream() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let mut stream = watch(
        &mut telemetry,
        WatchReadingsRequest {
            home_id: HOME.into(),
            ..Default::default()
        },
    )
    .await;
    ingest(&mut telemetry, vec![numbered(1)]).await;
    assert_eq!(next(&mut stream).await.readings.len(), 2);
    // 1 again alone, then with 2 in one call: only 2 is news.
    ingest(&mut telemetry, vec![numbered(1)]).await;
    ingest(&mut telemetry, vec![numbered(1), numbered(2)]).await;
    let live = next(&mut stream).await;
    assert_eq!(
        live.readings.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [2, 2],
        "the resent batch 1 is not shown again"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_replay_keeps_to_the_filters_and_to_the_home() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    // A sensor of another home, which a watcher of HOME must not see even
    // when it names it.
    let mut devices = app.devices().await;
    devices
        .create_home(CreateHomeRequest {
            id: "other".into(),
            name: "Other".into(),
        })
        .await
        .unwrap();
    devices
        .register_device(RegisterDeviceRequest {
            home_id: "other".into(),
            id: "neighbour".into(),
            kind: DeviceKind::Sensor as i32,
            name: "Neighbour".into(),
        })
        .await
        .unwrap();
    let mut theirs = numbered(5);
    theirs.home_id = "other".into();
    theirs.device_id = "neighbour".into();
    ingest(&mut telemetry, vec![numbered(5), numbered(6), theirs]).await;

    let mut stream = watch(
        &mut telemetry,
        WatchReadingsRequest {
            home_id: HOME.into(),
            device_ids: vec![SENSOR.into(), "neighbour".into()],
            metrics: vec![Metric::TemperatureCelsius as i32],
            since_unix_ms: numbered(1).time_unix_ms,
        },
    )
    .await;
    ingest(&mut telemetry, vec![numbered(7)]).await;
    let (replayed, live) = replay_then_live(&mut stream).await;
    // Batch 7 may be in the replay too: it can commit before the replay
    // reads (the overlap a client keys away).
    let seen: Vec<(&str, i32, u64)> = replayed
        .iter()
        .flat_map(|m| &m.readings)
        .map(|r| (r.device_id.as_str(), r.metric, r.seq))
        .filter(|r| r.2 != 7)
        .collect();
    let temperature = Metric::TemperatureCelsius as i32;
    assert_eq!(
        seen,
        [(SENSOR, temperature, 5), (SENSOR, temperature, 6)],
        "only the home's sensor, only temperatures"
    );
    assert_eq!(
        live.readings
            .iter()
            .map(|r| (r.device_id.as_str(), r.metric, r.seq))
            .collect::<Vec<_>>(),
        [(SENSOR, temperature, 7)]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_resume_from_beyond_an_hour_is_refused_naming_the_field() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    for since in [T0 - 3_600_001, -1] {
        let status = telemetry
            .watch_readings(WatchReadingsRequest {
                home_id: HOME.into(),
                since_unix_ms: since,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{since}");
        assert!(status.message().contains("since_unix_ms"), "{status:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_device_change_no_news_brought_is_shown_by_the_resync() {
    // Two replicas on one database, each with its own embedded broker: no
    // news passes between them, as when the replica that made a change is
    // killed before telling the others.
    let here = spawn_app().await;
    here.home_with_a_fan().await;
    let there = spawn_app_with(&[("HEARTH_DATABASE_URL", here.database_url.as_str())]).await;

    let mut stream = here
        .devices()
        .await
        .watch_devices(WatchDevicesRequest {
            home_id: HOME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("the home as it is");
    assert_eq!(first.devices[0].desired, None);

    there
        .devices()
        .await
        .set_mode(SetModeRequest {
            device_id: FAN.into(),
            mode: Mode::On as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let shown = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("shown within the patience")
        .unwrap()
        .expect("the stream goes on");
    let fan = shown.devices.iter().find(|d| d.id == FAN).expect("the fan");
    assert_eq!(
        fan.desired.as_ref().map(|d| (d.version, d.on)),
        Some((1, true))
    );
    assert_eq!(shown.devices.len(), 1, "only what changed: {shown:?}");
    there.stop().await;
    here.stop().await;
}
