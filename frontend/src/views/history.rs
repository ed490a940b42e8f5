//! A sensor's stored readings as a table, newest first, twenty to a page,
//! with Newer / Older paging over `ListReadings` cursors, and a button that
//! downloads the readings of the charts' range as CSV (`ExportReadings`).

use hearth_proto::v1::{ListReadingsResponse, Metric};
use leptos::{prelude::*, task::spawn_local};

use super::{
    alert,
    loaded::{table, Column, Loaded, Loader, Shown},
};
use crate::{
    api::{self, ApiError},
    browser::{self, Download},
    display,
    range::Window,
    readings::Pager,
};

const PAGE_SIZE: u32 = 20;

/// The history of sensor `device_id`, called `name` on screen; `window` is
/// the range the CSV download covers.
#[component]
pub fn History(device_id: String, name: String, window: Signal<Window>) -> impl IntoView {
    let export = {
        let device_id = device_id.clone();
        view! { <ExportButton device_id window /> }
    };
    let pager = RwSignal::new(Pager::default());
    // The token of the page after the one on screen; "" on the last page.
    let next_token = RwSignal::new(String::new());
    let reload = RwSignal::new(0u32);
    let page = Loader::new(move || {
        reload.track();
        let (device_id, token) = (device_id.clone(), pager.with(|p| p.token().to_owned()));
        async move {
            let page =
                api::list_readings(&device_id, Metric::Unspecified, 0, PAGE_SIZE, &token).await;
            next_token.set(
                page.as_ref()
                    .map(|p| p.next_page_token.clone())
                    .unwrap_or_default(),
            );
            Shown::of("the history", page, readings_table)
        }
    });

    let newest = move |_| {
        if pager.with_untracked(Pager::has_newer) {
            pager.set(Pager::default());
        } else {
            reload.update(|n| *n += 1);
        }
    };
    let older = move |_| {
        let token = next_token.get_untracked();
        if !token.is_empty() {
            pager.update(|p| p.older(token));
        }
    };

    view! {
        <section class="history" aria-labelledby="history-title">
            <div class="history-head">
                <h2 id="history-title">"History of " {name}</h2>
                {export}
                <nav class="pager" aria-label="History pages">
                    <button aria-label="Newest readings" on:click=newest>"Newest"</button>
                    <button
                        aria-label="Newer readings"
                        disabled=move || !pager.with(Pager::has_newer)
                        on:click=move |_| pager.update(Pager::newer)
                    >
                        "‹ Newer"
                    </button>
                    <span class="page-number">"Page " {move || pager.with(Pager::page_number)}</span>
                    <button aria-label="Older readings" disabled=move || next_token.with(String::is_empty) on:click=older>
                        "Older ›"
                    </button>
                </nav>
            </div>
            <Loaded loader=page loading="Loading readings…" />
        </section>
    }
}

const COLUMNS: &[Column] = &[
    Column("Time", ""),
    Column("Metric", ""),
    Column("Value", "value"),
];

fn readings_table(page: &ListReadingsResponse) -> AnyView {
    let rows = page
        .readings
        .iter()
        .map(|reading| {
            let metric = reading.metric();
            vec![
                browser::local_time(reading.time_unix_ms),
                display::metric_name(metric).to_owned(),
                display::reading(metric, reading.value),
            ]
        })
        .collect();
    table("readings", COLUMNS, rows, "No readings stored yet.")
}

/// Saves the readings of `window`, every metric, as a CSV file.
#[component]
fn ExportButton(device_id: String, window: Signal<Window>) -> impl IntoView {
    // Rows received so far while an export runs.
    let exporting = RwSignal::new(None::<usize>);
    let failure = RwSignal::new(None::<String>);
    let start = move |_| {
        if exporting.get_untracked().is_some() {
            return;
        }
        let (device_id, w) = (device_id.clone(), window.get_untracked());
        exporting.set(Some(0));
        failure.set(None);
        // Why not `spawn_scoped`: an event handler runs outside the view's
        // owner; if the page is gone when a chunk lands, its signals ignore it.
        spawn_local(async move {
            match save_csv(&device_id, w, exporting).await {
                Ok(()) => {}
                Err(e) => failure.set(Some(format!("No CSV: {e}."))),
            }
            exporting.set(None);
        });
    };
    let label = move || match exporting.get() {
        Some(rows) => format!("Exporting… {rows} rows"),
        None => "Download CSV".to_owned(),
    };
    view! {
        <button
            class="export"
            aria-label="Download the readings of the chosen range as CSV"
            title="Every metric over the range chosen for the charts, times in UTC"
            disabled=move || exporting.with(Option::is_some)
            on:click=start
        >
            {label}
        </button>
        {move || failure.get().map(alert)}
    }
}

/// Streams the export of `window` into a file and offers it for download.
async fn save_csv(
    device_id: &str,
    window: Window,
    rows: RwSignal<Option<usize>>,
) -> Result<(), String> {
    let failed = |e: ApiError| e.to_string();
    let mut stream = api::export_readings(device_id, window.start_unix_ms, window.end_unix_ms)
        .await
        .map_err(failed)?;
    // Why a byte order mark: without it Excel reads UTF-8 as a legacy code
    // page and shows "°C" as "Â°C"; other tools skip it.
    let file = Download::starting_with("\u{feff}".as_bytes());
    let mut lines = 0;
    while let Some(chunk) = stream.next().await.map_err(failed)? {
        lines += chunk.csv.iter().filter(|&&b| b == b'\n').count();
        file.push(&chunk.csv);
        rows.set(Some(lines.saturating_sub(1)));
    }
    let name = display::export_filename(
        device_id,
        &browser::datetime_local(window.start_unix_ms),
        &browser::datetime_local(window.end_unix_ms),
    );
    file.save(&name, "text/csv;charset=utf-8")
}
