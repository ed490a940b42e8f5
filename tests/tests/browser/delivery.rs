//! A sensor whose readings went missing on the way is marked on its tile,
//! with how many arrived and when the last was lost; one that lost none says
//! so, unmarked.

use hearth_proto::v1::{DeviceKind, IngestBatchRequest, Metric, Reading, ReadingBatch};
use hearth_tests::browser::{screenshot, wait_for_text, Driver, Screen};

use super::{count, spawn_app, BROWSER, WAIT};

fn batch(sensor: &str, seq: u64) -> ReadingBatch {
    ReadingBatch {
        device_id: sensor.into(),
        seq,
        run_start: 1,
        time_unix_ms: hearth_agent::unix_ms_now() - 60_000 + seq as i64 * 1_000,
        readings: vec![Reading {
            metric: Metric::TemperatureCelsius as i32,
            value: 21.0,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_that_lost_readings_is_marked_with_how_many_and_when() {
    let _turn = BROWSER.lock().await;
    let app = spawn_app(false).await;
    let home = app
        .home_with(&[("lossy", DeviceKind::Sensor), ("whole", DeviceKind::Sensor)])
        .await;
    // `lossy` sent 1..=10 and 4, 5 and 6 never arrived; `whole` lost none.
    let mut batches: Vec<_> = (1..=10)
        .filter(|s| !(4..=6).contains(s))
        .map(|s| batch("lossy", s))
        .collect();
    batches.extend((1..=10).map(|s| batch("whole", s)));
    let response = app
        .telemetry()
        .await
        .ingest_batch(IngestBatchRequest {
            batches,
            ..Default::default()
        })
        .await
        .expect("IngestBatch")
        .into_inner();
    assert_eq!(response.accepted, 17, "{:?}", response.rejected);

    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client
        .goto(&format!("http://{}/homes/{home}", app.http))
        .await
        .expect("opening the home");
    let lossy = wait_for_text(
        &client,
        r#"article[data-device="lossy"] p.delivery.lossy"#,
        WAIT,
        |t| !t.is_empty(),
    )
    .await;
    assert!(
        lossy.starts_with("70.0% arrived: 3 missing, the last in the hour from"),
        "{lossy}"
    );
    let whole = wait_for_text(
        &client,
        r#"article[data-device="whole"] p.delivery"#,
        WAIT,
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(whole, "All 10 readings of the last day arrived");
    assert_eq!(
        count(&client, r#"article[data-device="whole"] p.delivery.lossy"#).await,
        0,
        "a sensor that lost nothing is not marked"
    );
    screenshot(&client, "delivery-desktop").await;
}
