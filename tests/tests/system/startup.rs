//! Start-up and shutdown: the demo home, errors that name the setting, and a
//! clean stop on SIGTERM.

use std::{process::Command, time::Duration};

use futures::StreamExt as _;
use hearth_proto::v1::{ListDevicesRequest, Mode, WatchReadingsRequest};
use hearth_tests::{hearth_binary, Backend, TempDir, TestApp};

/// Runs `hearth` with `env` and returns (exit success, all its output).
fn run_to_exit(env: &[(&str, &str)]) -> (bool, String) {
    let dir = TempDir::new();
    let output = Command::new(hearth_binary())
        .current_dir(&dir.0)
        .env("HEARTH_LISTEN", "127.0.0.1:0")
        .env("HEARTH_MQTT_LISTEN", "127.0.0.1:0")
        .env("HEARTH_DEMO", "false")
        .envs(env.iter().copied())
        .output()
        .expect("running hearth");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn start_up_errors_name_what_could_not_be_reached() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("HEARTH_MQTT_LISTEN", &taken)], "HEARTH_MQTT_LISTEN"),
        (&[("HEARTH_LISTEN", &taken)], "HEARTH_LISTEN"),
        (
            &[("HEARTH_MQTT_URL", "mqtt://127.0.0.1:1")],
            "HEARTH_MQTT_URL",
        ),
        (
            &[("HEARTH_DATABASE_URL", "mysql://root@127.0.0.1:1/hearth")],
            "HEARTH_DATABASE_URL",
        ),
        (&[("HEARTH_LISTEN", "not-an-address")], "HEARTH_LISTEN"),
    ];
    for (env, setting) in cases {
        let (ok, output) = run_to_exit(env);
        assert!(!ok, "hearth must exit with an error for {env:?}");
        assert!(
            output.contains(setting),
            "the error for {env:?} should name {setting}:\n{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_runs_a_live_demo_home() {
    let app = TestApp::spawn_with(Backend::Embedded, &[]).await;
    let devices = app
        .devices()
        .await
        .list_devices(ListDevicesRequest {
            home_id: "demo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    let mut ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["demo-fan", "demo-light", "demo-sensor"]);
    assert_eq!(
        devices.iter().find(|d| d.id == "demo-fan").unwrap().mode,
        Mode::Auto as i32
    );

    let mut live = app
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: "demo".into(),
            device_ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), live.next())
        .await
        .expect("demo readings flow")
        .unwrap()
        .unwrap();
    assert!(
        first.readings.iter().all(|r| r.device_id == "demo-sensor") && first.readings.len() == 3,
        "{first:?}"
    );
    app.wait_for_device("demo-light", Duration::from_secs(20), |d| d.online)
        .await;
    app.wait_for_device("demo-fan", Duration::from_secs(20), |d| d.online)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_hearth_cleanly() {
    let mut app = TestApp::spawn(Backend::Embedded).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.metric("hearth_automation_leader").await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never took the automation lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = app.terminate();
        (status, app.logs())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit status {:?}\n{}",
        status.0,
        status.1
    );
    assert!(status.1.contains("stopped"), "{}", status.1);
    assert!(
        status.1.contains("released the automation lease"),
        "a clean stop hands the rules on at once: {}",
        status.1
    );
}

/// The built web app (`./hearth.sh test` builds it first) is served at `/`,
/// and a client-side route reloaded in the browser still gets the app.
#[tokio::test]
async fn the_web_app_is_served_next_to_the_api() {
    let dist = hearth_tests::workspace_dir().join("frontend/dist");
    assert!(
        dist.join("index.html").is_file(),
        "{} has no built app: run frontend/build.sh (./hearth.sh test does)",
        dist.display()
    );
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[
            ("HEARTH_DEMO", "false"),
            ("HEARTH_WEB_DIR", dist.to_str().unwrap()),
        ],
    )
    .await;
    for path in ["/", "/homes/demo", "/homes/demo/devices/demo-fan"] {
        let response = hearth_tests::http_get(app.http, path).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert!(
            response.contains(".wasm"),
            "{path} serves the app's index.html: {response}"
        );
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains("cache-control: no-cache"),
            "{path}: the page is revalidated on every load: {head}"
        );
    }
    // The build's assets, named after their content hash: gzip when the
    // browser takes it, cached for good.
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    let assets: Vec<&str> = index
        .split(['"', '\''])
        .filter(|s| s.starts_with('/') && (s.ends_with(".wasm") || s.ends_with(".js")))
        .collect();
    assert!(
        assets.len() >= 2,
        "index.html names its wasm and JS: {index}"
    );
    for asset in assets {
        let response =
            hearth_tests::http_get_with(app.http, asset, &[("Accept-Encoding", "gzip")]).await;
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{asset}: {head}");
        assert!(head.contains("content-encoding: gzip"), "{asset}: {head}");
        assert!(
            head.contains("cache-control: public, max-age=31536000, immutable"),
            "{asset}: {head}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("hearth_readings_stored_total"),
        "{metrics}"
    );
}

/// An open live stream (a browser tab) must not hold up a rolling update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_live_streams() {
    let mut app = TestApp::spawn(Backend::Embedded).await;
    let home = app.home_with(&[]).await;
    let mut live = app
        .telemetry()
        .await
        .watch_readings(WatchReadingsRequest {
            home_id: home,
            device_ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, ended) = tokio::join!(
        tokio::task::spawn_blocking(move || app.terminate()),
        tokio::time::timeout(Duration::from_secs(10), live.next())
    );
    assert!(ended.is_ok(), "the stream ended on shutdown");
    assert!(status.unwrap().success());
}
