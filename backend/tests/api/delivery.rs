//! `GetDelivery`: how many of the readings a sensor sent were stored, from
//! their sequence numbers; gaps counted, late readings filling them (and
//! counted as late), resent ones counted as duplicates, agent restarts not
//! counted.

use hearth_proto::v1::{
    telemetry_service_client::TelemetryServiceClient, DeliveryFigures, DeviceKind,
    GetDeliveryRequest, IngestBatchRequest, Metric, ReadingBatch, RegisterDeviceRequest,
    RunAccount,
};
use tonic::{transport::Channel, Code};

use crate::{
    export::{app_with_a_sensor, batch, ingest, T0},
    helpers::{eventually, SimDevice, FAN, HOME, SENSOR},
};

const HOUR_MS: i64 = 3_600_000;

/// A batch of `seq` in the run that began at `run_start`, taken `seq`
/// seconds after an hour before T0, with a temperature and a humidity.
fn numbered(run_start: u64, seq: u64) -> ReadingBatch {
    ReadingBatch {
        run_start,
        ..batch(
            seq,
            T0 - HOUR_MS + (seq % 3_000) as i64 * 1_000,
            &[
                (Metric::TemperatureCelsius, 21.0),
                (Metric::HumidityPercent, 40.0),
            ],
        )
    }
}

async fn delivery(telemetry: &mut TelemetryServiceClient<Channel>) -> DeliveryFigures {
    delivery_of(telemetry, SENSOR).await
}

async fn delivery_of(
    telemetry: &mut TelemetryServiceClient<Channel>,
    device: &str,
) -> DeliveryFigures {
    delivery_until(telemetry, device, 0).await
}

/// `device`'s delivery over the day before `end` (0: now).
async fn delivery_until(
    telemetry: &mut TelemetryServiceClient<Channel>,
    device: &str,
    end_unix_ms: i64,
) -> DeliveryFigures {
    telemetry
        .get_delivery(GetDeliveryRequest {
            device_id: device.into(),
            end_unix_ms,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .total
        .expect("a total")
}

fn figures(expected: u64, stored: u64, restarts: u32) -> DeliveryFigures {
    DeliveryFigures {
        expected,
        stored,
        missing: expected - stored,
        restarts,
        ..Default::default()
    }
}

/// `figures` with `late` and `duplicates` readings.
fn arrived(figures: DeliveryFigures, late: u64, duplicates: u64) -> DeliveryFigures {
    DeliveryFigures {
        late,
        duplicates,
        ..figures
    }
}

#[tokio::test]
async fn gaps_count_as_missing_until_the_late_readings_arrive() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    // Batches 1..=10 of a run that began at 1; 4 and 5 lost on the way.
    let sent: Vec<_> = (1..=10)
        .filter(|s| ![4, 5].contains(s))
        .map(|s| numbered(1, s))
        .collect();
    ingest(&mut telemetry, sent).await;
    // Two metrics a batch: 20 readings sent, 16 stored.
    assert_eq!(delivery(&mut telemetry).await, figures(20, 16, 0));

    // 4 arrives late (a gateway's backlog); a repeat of 6 stores nothing.
    ingest(&mut telemetry, vec![numbered(1, 4), numbered(1, 6)]).await;
    assert_eq!(
        delivery(&mut telemetry).await,
        arrived(figures(20, 18, 0), 2, 2)
    );

    // The hour and when the loss was.
    let answer = telemetry
        .get_delivery(GetDeliveryRequest {
            device_id: SENSOR.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lossy = answer
        .hours
        .iter()
        .find(|h| h.figures.as_ref().is_some_and(|f| f.missing > 0))
        .expect("an hour with the loss");
    assert_eq!(answer.last_loss_unix_ms, lossy.start_unix_ms);
    assert_eq!(lossy.start_unix_ms % HOUR_MS, 0);
    app.stop().await;
}

#[tokio::test]
async fn late_and_resent_readings_are_counted_per_device_and_kept_across_a_restart() {
    const OTHER: &str = "other-sensor";
    let (app, mut telemetry) = app_with_a_sensor().await;
    app.devices()
        .await
        .register_device(RegisterDeviceRequest {
            home_id: HOME.into(),
            id: OTHER.into(),
            kind: DeviceKind::Sensor as i32,
            name: "Other".into(),
        })
        .await
        .unwrap();
    let of_other = |seq| ReadingBatch {
        device_id: OTHER.into(),
        ..numbered(1, seq)
    };
    // The sensor's 1..=10 but 4 and 5, then 4 after 10 (late) and 6 again
    // (a resent batch); the other sensor's 1..=10 in order.
    let mut sent: Vec<_> = [1, 2, 3, 6, 7, 8, 9, 10, 4, 6]
        .into_iter()
        .map(|s| numbered(1, s))
        .collect();
    sent.extend((1..=10).map(of_other));
    for batch in sent {
        ingest(&mut telemetry, vec![batch]).await;
    }
    // Two metrics a batch.
    let sensor = arrived(figures(20, 18, 0), 2, 2);
    assert_eq!(delivery(&mut telemetry).await, sensor);
    assert_eq!(
        delivery_of(&mut telemetry, OTHER).await,
        figures(20, 20, 0),
        "another device's figures are its own"
    );
    let hours = telemetry
        .get_delivery(GetDeliveryRequest {
            device_id: SENSOR.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hours;
    let per_hour = |f: fn(&DeliveryFigures) -> u64| {
        hours
            .iter()
            .map(|h| h.figures.as_ref().map_or(0, f))
            .sum::<u64>()
    };
    assert_eq!((per_hour(|f| f.late), per_hour(|f| f.duplicates)), (2, 2));
    let metrics = app.metrics().await;
    for line in [
        "hearth_readings_late_total{home=\"home\"} 2",
        "hearth_readings_duplicate_total{home=\"home\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // Counted where they are stored: a restarted app still knows, and adds
    // to them; 5 comes late, and nothing is missing any more.
    let app = app.restart().await;
    let mut telemetry = app.telemetry().await;
    assert_eq!(delivery(&mut telemetry).await, sensor);
    ingest(&mut telemetry, vec![numbered(1, 5)]).await;
    assert_eq!(
        delivery(&mut telemetry).await,
        arrived(figures(20, 20, 0), 4, 2)
    );
    assert_eq!(delivery_of(&mut telemetry, OTHER).await, figures(20, 20, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_sensor_that_stops_says_what_it_sent_and_its_lost_last_batches_are_missing() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    // Batches 1..=10 sent; 8, 9 and 10 lost on the way, and no later batch
    // shows the gap.
    ingest(&mut telemetry, (1..=7).map(|s| numbered(1, s)).collect()).await;
    assert_eq!(delivery(&mut telemetry).await, figures(14, 14, 0));

    // Its status on the way out says it sent up to 10.
    let sensor = SimDevice::connect(&app, SENSOR).await;
    sensor.says_sent(SENSOR, 1, 10, &[]).await;
    // Up to an hour on: the status is said at the app clock's now, T0.
    let later = T0 + HOUR_MS;
    let said = eventually("the status counted", || async {
        let figures = delivery_until(&mut telemetry.clone(), SENSOR, later).await;
        (figures.expected > 14).then_some(figures)
    })
    .await;
    assert_eq!(said, figures(20, 14, 0), "two metrics of 8, 9 and 10");

    // The lost batches turn up after all (a gateway's backlog): nothing is
    // missing any more.
    ingest(&mut telemetry, (8..=10).map(|s| numbered(1, s)).collect()).await;
    assert_eq!(
        delivery_until(&mut telemetry, SENSOR, later).await,
        figures(20, 20, 0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_run_of_which_nothing_arrived_is_missing_whole_for_the_metrics_it_carried() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let sensor = SimDevice::connect(&app, SENSOR).await;
    // A new sensor's first run sent 1..=10, each batch a temperature and a
    // humidity, and all of it was lost: Hearth has stored nothing of it.
    sensor
        .says_sent(
            SENSOR,
            1,
            10,
            &[Metric::TemperatureCelsius, Metric::HumidityPercent],
        )
        .await;
    let later = T0 + HOUR_MS;
    let said = eventually("the status counted", || async {
        let figures = delivery_until(&mut telemetry.clone(), SENSOR, later).await;
        (figures.expected > 0).then_some(figures)
    })
    .await;
    assert_eq!(said, figures(20, 0, 0), "ten batches of two metrics");

    // They turn up after all: nothing is missing, nothing counted twice.
    ingest(&mut telemetry, (1..=10).map(|s| numbered(1, s)).collect()).await;
    assert_eq!(
        delivery_until(&mut telemetry, SENSOR, later).await,
        figures(20, 20, 0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_forwards_what_a_run_sent_and_bad_accounts_are_refused_by_index() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let account = |device: &str, run_start, last_seq, metrics: &[i32]| RunAccount {
        home_id: HOME.into(),
        device_id: device.into(),
        run_start,
        last_seq,
        metrics: metrics.to_vec(),
        time_unix_ms: T0,
    };
    let both = [
        Metric::TemperatureCelsius as i32,
        Metric::HumidityPercent as i32,
    ];
    // A UDP sensor's batches 1..=7 arrived; 8..=10 were lost on the LAN,
    // and its account, sent as it stopped, comes with the gateway's next
    // call. The other accounts are refused, each with its reason.
    let response = telemetry
        .ingest_batch(IngestBatchRequest {
            batches: (1..=7).map(|s| numbered(1, s)).collect(),
            accounts: vec![
                account("nobody", 1, 10, &both),
                account(SENSOR, 1, 10, &both),
                account(SENSOR, 5, 4, &both),
                account(SENSOR, 1, 10, &[9]),
                account(FAN, 1, 10, &both),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.accounts_accepted), (7, 1));
    let refused: Vec<(u32, &str)> = response
        .rejected_accounts
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (0, "unknown device nobody"),
            (2, "device sensor: last_seq 4 is below run_start 5"),
            (3, "device sensor: metrics names 9, which is no metric"),
            (4, "device fan is a fan, not a sensor"),
        ]
    );
    assert_eq!(
        delivery_until(&mut telemetry, SENSOR, T0 + HOUR_MS).await,
        figures(20, 14, 0),
        "two metrics of 8, 9 and 10, said by the account alone"
    );
    let too_many = telemetry
        .ingest_batch(IngestBatchRequest {
            accounts: vec![account(SENSOR, 1, 10, &both); 10_001],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("accounts"), "{too_many:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_restart_is_not_loss_but_the_first_batch_it_loses_is() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    // Run 1 began at 1 and sent 1..=5. The agent restarted and its numbers
    // jumped to 1000 (the clock); batch 1000 was lost, 1001..=1003 arrive.
    let mut sent: Vec<_> = (1..=5).map(|s| numbered(1, s)).collect();
    sent.extend((1001..=1003).map(|s| numbered(1000, s)));
    ingest(&mut telemetry, sent).await;
    assert_eq!(delivery(&mut telemetry).await, figures(18, 16, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_sender_that_names_no_run_has_every_gap_counted() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    ingest(&mut telemetry, vec![numbered(0, 1), numbered(0, 11)]).await;
    assert_eq!(delivery(&mut telemetry).await, figures(22, 4, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_run_that_starts_after_its_batch_is_refused_with_the_reason() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let response = telemetry
        .ingest_batch(IngestBatchRequest {
            batches: vec![numbered(8, 7)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 0);
    assert_eq!(
        response.rejected[0].reason,
        "run_start 8 is above seq 7: a run starts at or before its batches"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_delivery_requests_name_their_field() {
    let (app, mut telemetry) = app_with_a_sensor().await;
    let cases = [
        (
            GetDeliveryRequest {
                device_id: "nobody".into(),
                ..Default::default()
            },
            Code::NotFound,
            "device nobody",
        ),
        (
            GetDeliveryRequest {
                device_id: SENSOR.into(),
                start_unix_ms: T0,
                end_unix_ms: T0 - 1,
            },
            Code::InvalidArgument,
            "start_unix_ms",
        ),
        (
            GetDeliveryRequest {
                device_id: SENSOR.into(),
                start_unix_ms: T0 - 40 * 24 * HOUR_MS,
                end_unix_ms: T0,
            },
            Code::InvalidArgument,
            "end_unix_ms",
        ),
    ];
    for (request, code, named) in cases {
        let status = telemetry.get_delivery(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(named),
            "{request:?}: {}",
            status.message()
        );
    }
    app.stop().await;
}
