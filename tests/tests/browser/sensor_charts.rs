//! A sensor's page on a desktop window: its range buttons (1 h, 24 h, 7 d)
//! each redraw the temperature chart from `GetSeries`, with buckets as wide
//! as the range asks for and time labels to match.

use std::time::Duration;

use fantoccini::Locator;
use hearth_proto::v1::{GetSeriesRequest, Metric};
use hearth_tests::{
    browser::{screenshot, wait_for_text, Driver, Screen},
    TestApp,
};

use super::{count, spawn_app, BROWSER, WAIT};

const CHART: &str = r#".charts .chart-block[data-chart="temperature_celsius"]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_buttons_redraw_the_chart_from_the_series() {
    let _turn = BROWSER.lock().await;
    let app = spawn_app(true).await;
    wait_for_the_hourly_rollup(&app).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;

    client
        .goto(&format!(
            "http://{}/homes/demo/devices/demo-sensor",
            app.http
        ))
        .await
        .expect("opening the demo sensor");
    wait_for_text(&client, &format!("{CHART} .chart-title"), WAIT, |t| {
        t.contains("live")
    })
    .await;
    screenshot(&client, "sensor-charts-desktop-0-live").await;

    let mut captions = Vec::new();
    for range in ["1 h", "24 h", "7 d"] {
        let button = format!(r#".ranges button[data-range="{range}"]"#);
        super::click(&client, &button).await;
        // Why compare with the last caption: it names the bucket width of the
        // series answered, so a new one says the chart was redrawn.
        let caption = wait_for_text(&client, &format!("{CHART} .caption"), WAIT, |t| {
            t.contains("buckets of") && !captions.iter().any(|c: &String| c == t)
        })
        .await;
        let pressed = client
            .find(Locator::Css(&button))
            .await
            .expect("the range button")
            .attr("aria-pressed")
            .await
            .expect("aria-pressed");
        assert_eq!(pressed.as_deref(), Some("true"), "{range} shows as chosen");
        assert!(
            count(&client, &format!("{CHART} .chart-title")).await == 1,
            "one temperature chart"
        );
        let title = wait_for_text(&client, &format!("{CHART} .chart-title"), WAIT, |_| true).await;
        assert!(!title.contains("live"), "{range}: still the live chart");
        let line = client
            .find(Locator::Css(&format!("{CHART} path.line")))
            .await
            .expect("the average line")
            .attr("d")
            .await
            .expect("its path");
        assert!(
            line.is_some_and(|d| d.starts_with('M')),
            "{range}: the demo's readings are drawn ({caption})"
        );
        let labels = client
            .find_all(Locator::Css(&format!("{CHART} .x-label")))
            .await
            .expect("time labels");
        assert!(!labels.is_empty(), "{range}: time labels");
        let first = labels[0].text().await.expect("a time label");
        // Within a day the labels are clock times (14:05), beyond it dates.
        let clock = first.len() == 5 && first.as_bytes()[2] == b':';
        assert_eq!(clock, range != "7 d", "{range}: time label {first:?}");
        screenshot(
            &client,
            &format!("sensor-charts-desktop-{}", range.replace(' ', "")),
        )
        .await;
        captions.push(caption);
    }
    client.close().await.expect("closing the session");
}

/// Waits until the demo sensor's temperature has an hourly bucket, the
/// coarsest the 7-day chart asks for: the rollups trail the raw readings by
/// a few seconds, and each range button fetches its series once.
async fn wait_for_the_hourly_rollup(app: &TestApp) {
    let mut api = app.telemetry().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = hearth_agent::unix_ms_now();
        let series = api
            .get_series(GetSeriesRequest {
                device_id: "demo-sensor".into(),
                metric: Metric::TemperatureCelsius as i32,
                start_unix_ms: now - 7 * 24 * 3_600_000,
                end_unix_ms: now,
                max_points: 300,
            })
            .await
            .expect("GetSeries")
            .into_inner();
        if !series.points.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo sensor's readings never reached the hourly rollup"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
