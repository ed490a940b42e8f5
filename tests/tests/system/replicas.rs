//! Replicas with different roles (`HEARTH_ROLES`): every live stream shows
//! every change, whichever replica stored it.

use std::time::Duration;

use futures::StreamExt as _;
use hearth_proto::v1::{
    DeviceKind, Metric, Mode, Reading, ReadingBatch, SetModeRequest, WatchDevicesRequest,
    WatchReadingsRequest,
};
use hearth_tests::{spawn_actuator, unique, Backend, TestApp};

/// A browser on a web replica sees the readings an ingest replica stored and
/// the acknowledgement a control replica recorded. The web replica takes no
/// readings from the broker and no reports: all of it reaches it as news from
/// the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_replica_streams_what_other_replicas_stored() {
    let worker = TestApp::spawn_with(
        Backend::External,
        &[("HEARTH_DEMO", "false"), ("HEARTH_ROLES", "ingest,control")],
    )
    .await;
    let web = worker
        .spawn_replica_with(None, &[("HEARTH_ROLES", "web")])
        .await;
    let (sensor, fan) = (unique("sensor"), unique("fan"));
    let home = worker
        .home_with(&[(&sensor, DeviceKind::Sensor), (&fan, DeviceKind::Fan)])
        .await;
    let mut readings = web
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: home.clone(),
            ..Default::default()
        })
        .await
        .expect("WatchReadings on the web replica")
        .into_inner();
    let mut devices = web
        .devices()
        .await
        .watch_devices(WatchDevicesRequest {
            home_id: home.clone(),
        })
        .await
        .expect("WatchDevices on the web replica")
        .into_inner();

    let mut device = worker.connect_as_device(&sensor).await;
    let batch = ReadingBatch {
        seq: 1,
        time_unix_ms: hearth_runtime::unix_ms_now(),
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 21.5,
        }],
        ..Default::default()
    };
    device
        .publish_readings(&worker.topics, &home, &sensor, &batch)
        .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = readings.next().await {
            let message = message.expect("a live message");
            if message.readings.iter().any(|r| r.device_id == sensor) {
                return;
            }
        }
        panic!("the stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no reading on the web replica\n{}", web.logs()));

    let (_output, _agent) = spawn_actuator(&worker, &home, &fan);
    worker
        .wait_for_device(&fan, Duration::from_secs(10), |d| d.online)
        .await;
    worker
        .devices()
        .await
        .set_mode(SetModeRequest {
            device_id: fan.clone(),
            mode: Mode::On as i32,
            ..Default::default()
        })
        .await
        .expect("SetMode on the control replica");
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = devices.next().await {
            let message = message.expect("a device change");
            let acknowledged = message.devices.iter().any(|d| {
                d.id == fan
                    && d.desired.as_ref().is_some_and(|desired| {
                        desired.on
                            && d.reported
                                .as_ref()
                                .is_some_and(|r| r.applied_version == desired.version)
                    })
            });
            if acknowledged {
                return;
            }
        }
        panic!("the stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no acknowledgement on the web replica\n{}", web.logs()));
}
