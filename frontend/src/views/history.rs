//! A sensor's stored readings as a table, newest first, twenty to a page,
//! with Newer / Older paging over `ListReadings` cursors.

use hearth_proto::v1::{ListReadingsResponse, Metric};
use leptos::prelude::*;

use super::loaded::{table, Column, Loaded, Loader, Shown};
use crate::{api, browser, display, readings::Pager};

const PAGE_SIZE: u32 = 20;

/// The history of sensor `device_id`, called `name` on screen.
#[component]
pub fn History(device_id: String, name: String) -> impl IntoView {
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
