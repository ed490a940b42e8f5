//! The app over HTTPS (HEARTH_TLS_CERT_FILE): Chromium loads it from the TLS
//! port and its gRPC-web calls, the live streams included, go over the same
//! TLS connection. Chromium trusts the test's certificate by its public key
//! (`--ignore-certificate-errors-spki-list`, which needs the fresh profile
//! every session has); nothing else is relaxed.

use fantoccini::Locator;
use hearth_runtime::test_ca::TestCa;
use hearth_tests::{
    browser::{screenshot, wait_for_text, web_dir, Driver, Screen},
    TempDir, TestApp,
};

use crate::{click, BROWSER, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_and_its_grpc_web_calls_work_over_https() {
    let _turn = BROWSER.lock().await;
    let dir = TempDir::new();
    let ca = TestCa::new();
    let issued = ca.issue();
    let files = ca.write_issued(&dir.0, &issued);
    let web = web_dir();
    let app = TestApp::spawn_with_tls(
        &files,
        &[
            ("HEARTH_DEMO", "true"),
            ("HEARTH_WEB_DIR", web.to_str().expect("a UTF-8 path")),
        ],
    )
    .await;
    let driver = Driver::start().await;
    let client = driver
        .session_with(
            Screen::Desktop,
            &[format!(
                "--ignore-certificate-errors-spki-list={}",
                issued.spki_sha256
            )],
        )
        .await;

    let origin = format!("https://localhost:{}", app.http.port());
    client
        .goto(&format!("{origin}/homes/demo"))
        .await
        .expect("opening the app over HTTPS");
    let values = r#"article[data-device="demo-sensor"] dl.metrics"#;
    let first = wait_for_text(&client, values, WAIT, |t| t.contains("°C")).await;
    // A second value: the live stream (gRPC-web, server streaming) is up.
    wait_for_text(&client, values, WAIT, |t| t.contains("°C") && t != first).await;
    click(
        &client,
        r#"article[data-device="demo-fan"] button[data-mode="ON"]"#,
    )
    .await;
    wait_for_text(
        &client,
        r#"article[data-device="demo-fan"] .command"#,
        WAIT,
        |t| t.starts_with("ON acknowledged"),
    )
    .await;
    let protocol = client
        .execute("return location.protocol", vec![])
        .await
        .expect("reading the page's protocol");
    assert_eq!(protocol, "https:");
    screenshot(&client, "tls-1-fan-on").await;

    // The same page in plain HTTP on that port gets no app.
    client
        .goto(&format!("http://localhost:{}/homes/demo", app.http.port()))
        .await
        .ok();
    let apps = client
        .find_all(Locator::Css(r#"article[data-device="demo-sensor"]"#))
        .await
        .map_or(0, |found| found.len());
    assert_eq!(apps, 0, "nothing is served in plain HTTP");
    client.close().await.expect("closing the session");
}
