//! Headless Chromium for the browser tests and `bench-web`: starts Debian's
//! `chromedriver` on a free port and opens WebDriver sessions (fantoccini)
//! with a fresh profile each, at desktop size or emulating a 360-pixel-wide
//! phone. Missing Chromium is an error, never a skip: `./hearth.sh test`
//! installs it.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Map, Value};

use crate::{unique, TempDir};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The screen a session emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A 1280 × 900 window.
    Desktop,
    /// A phone 360 CSS pixels wide (Chromium's mobile emulation, touch on).
    Phone360,
}

impl Screen {
    pub fn name(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Phone360 => "phone360",
        }
    }
}

/// A running chromedriver; killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    profiles: TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers.
    pub async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver; ./hearth.sh test does it)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        // Its own process group, so that dropping the driver also ends the
        // browsers it started: a test that panics never closes its session.
        let mut child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    child,
                    port,
                    profiles: TempDir::new(),
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not listen on port {port}");
    }

    /// A new headless Chromium session on `screen`, with a fresh profile.
    pub async fn session(&self, screen: Screen) -> Client {
        self.session_with(screen, &[]).await
    }

    /// [`Driver::session`] with more Chromium switches.
    pub async fn session_with(&self, screen: Screen, switches: &[String]) -> Client {
        let profile = self.profiles.0.join(unique("profile"));
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend_from_slice(switches);
        let mut options = Map::new();
        match screen {
            Screen::Desktop => args.push("--window-size=1280,900".into()),
            Screen::Phone360 => {
                options.insert(
                    "mobileEmulation".into(),
                    json!({ "deviceMetrics": { "width": 360, "height": 780, "pixelRatio": 2.0, "touch": true } }),
                );
            }
        }
        options.insert("binary".into(), json!(CHROMIUM));
        options.insert("args".into(), json!(args));
        let mut capabilities = Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), Value::Object(options));
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session from chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process under it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `target/browser-artifacts/` (of CARGO_TARGET_DIR
/// when set).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_dir().join("target"), PathBuf::from);
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/browser-artifacts");
    dir
}

/// Saves a screenshot of `client`'s page as `{name}.png` and prints its path.
pub async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("taking a screenshot");
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("writing the screenshot");
    println!("screenshot: {}", path.display());
    path
}

/// The built web app (`frontend/dist`), which must contain `index.html`.
pub fn web_dir() -> PathBuf {
    let dir = crate::workspace_dir().join("frontend").join("dist");
    assert!(
        dir.join("index.html").exists(),
        "{} has no index.html: build the web app first (bash frontend/build.sh)",
        dir.display()
    );
    dir
}

/// Waits until `css` finds an element whose text satisfies `check`; returns
/// that text. Panics after `timeout` with the last text seen.
pub async fn wait_for_text(
    client: &Client,
    css: &str,
    timeout: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if check(&text) {
                    return text;
                }
                last = Some(text);
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{css} never showed the expected text; last: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
