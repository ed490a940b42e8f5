//! bench-web: how heavy and how quick the web app is.
//!
//! Prints the wasm + JS of `frontend/dist` raw and gzipped (what a browser
//! downloads before the first paint), then the time to first contentful
//! paint of `/homes/demo` served by a real `hearth` on loopback in headless
//! Chromium: the median of several loads, each in a fresh profile (cold
//! cache) and again reloaded in the same tab (warm cache). Ends with one JSON
//! line of the same figures.
//!
//! ```sh
//! bash frontend/build.sh
//! cargo build -p hearth-backend --bin hearth
//! HEARTH_BINARIES_BUILT=1 cargo run -p hearth-tests --bin bench-web [LOADS]
//! ```

use std::{path::Path, process::Command, time::Duration};

use anyhow::{bail, Context as _};
use fantoccini::Client;
use hearth_tests::{
    browser::{web_dir, Driver, Screen},
    Backend, TestApp,
};

/// Loads measured when no count is given.
const LOADS: usize = 7;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let loads = match std::env::args().nth(1) {
        Some(n) => n.parse().context("LOADS must be a whole number")?,
        None => LOADS,
    };
    if loads == 0 {
        bail!("LOADS must be at least 1");
    }
    let dist = web_dir();
    let (raw, gzip) = shipped_sizes(&dist)?;
    println!("web app: {}", dist.display());
    println!(
        "wasm+js: {raw} bytes raw ({} KiB), {gzip} bytes gzip ({} KiB)",
        raw / 1024,
        gzip / 1024
    );

    let web = dist.to_str().context("a UTF-8 path")?.to_owned();
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[("HEARTH_DEMO", "true"), ("HEARTH_WEB_DIR", &web)],
    )
    .await;
    let url = format!("http://{}/homes/demo", app.http);
    let driver = Driver::start().await;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..loads {
        let client = driver.session(Screen::Desktop).await;
        client.goto(&url).await.context("loading the app")?;
        cold.push(first_contentful_paint(&client).await?);
        client.refresh().await.context("reloading the app")?;
        warm.push(first_contentful_paint(&client).await?);
        client.close().await.context("closing the session")?;
    }
    let (cold_ms, warm_ms) = (median(&mut cold), median(&mut warm));
    println!("first contentful paint, median of {loads} loads on loopback (headless Chromium):");
    println!("  cold cache: {cold_ms:.0} ms   (all: {})", list(&cold));
    println!("  warm cache: {warm_ms:.0} ms   (all: {})", list(&warm));
    println!(
        "{{\"wasm_js_raw_bytes\":{raw},\"wasm_js_gzip_bytes\":{gzip},\"loads\":{loads},\
         \"fcp_cold_median_ms\":{cold_ms:.1},\"fcp_warm_median_ms\":{warm_ms:.1}}}"
    );
    Ok(())
}

/// Sizes of every `.wasm` and `.js` in `dist`: raw, and gzipped at level 9
/// (as `frontend/build.sh` precompresses them).
fn shipped_sizes(dist: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut raw, mut gzip) = (0, 0);
    for entry in std::fs::read_dir(dist).context("reading frontend/dist")? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("wasm" | "js")) {
            continue;
        }
        raw += std::fs::metadata(&path)?.len();
        let out = Command::new("gzip")
            .args(["-9", "-c"])
            .arg(&path)
            .output()
            .context("running gzip")?;
        if !out.status.success() {
            bail!("gzip failed on {}", path.display());
        }
        gzip += out.stdout.len() as u64;
    }
    if raw == 0 {
        bail!("no .wasm or .js in {}", dist.display());
    }
    Ok((raw, gzip))
}

/// The page's first contentful paint, ms after navigation started.
async fn first_contentful_paint(client: &Client) -> anyhow::Result<f64> {
    for _ in 0..200 {
        let value = client
            .execute(
                "const e = performance.getEntriesByName('first-contentful-paint'); \
                 return e.length ? e[0].startTime : null;",
                vec![],
            )
            .await
            .context("reading the paint timing")?;
        if let Some(ms) = value.as_f64() {
            return Ok(ms);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no first-contentful-paint entry after 10 s")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
