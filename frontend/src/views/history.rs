//! A sensor's stored readings as a table, newest first, twenty to a page,
//! with Newer / Older paging over `ListReadings` cursors.

use hearth_proto::v1::{ListReadingsResponse, Metric, StoredReading};
use leptos::prelude::*;

use super::alert;
use crate::{api, browser, display, readings::Pager};

const PAGE_SIZE: u32 = 20;

/// The history of sensor `device_id`, called `name` on screen.
#[component]
pub fn History(device_id: String, name: String) -> impl IntoView {
    let pager = RwSignal::new(Pager::default());
    let page = LocalResource::new(move || {
        let (device_id, token) = (device_id.clone(), pager.with(|p| p.token().to_owned()));
        async move { api::list_readings(&device_id, Metric::Unspecified, 0, PAGE_SIZE, &token).await }
    });

    let next_token = move || {
        page.map(|page| page.as_ref().ok().map(|p| p.next_page_token.clone()))
            .flatten()
            .filter(|token| !token.is_empty())
    };
    let newest = move |_| {
        if pager.with_untracked(Pager::has_newer) {
            pager.set(Pager::default());
        } else {
            page.refetch();
        }
    };
    let older = move |_| {
        if let Some(token) = next_token() {
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
                    <button aria-label="Older readings" disabled=move || next_token().is_none() on:click=older>
                        "Older ›"
                    </button>
                </nav>
            </div>
            <Transition fallback=|| view! { <p class="hint">"Loading readings…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => table(page).into_any(),
                        Err(e) => alert(format!("Cannot load the history: {e}.")).into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn table(page: ListReadingsResponse) -> impl IntoView {
    if page.readings.is_empty() {
        return view! { <p class="hint">"No readings stored yet."</p> }.into_any();
    }
    let rows = page.readings.into_iter().map(row).collect_view();
    view! {
        <div class="table-wrap">
            <table class="readings">
                <thead>
                    <tr>
                        <th scope="col">"Time"</th>
                        <th scope="col">"Metric"</th>
                        <th scope="col" class="value">"Value"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

fn row(reading: StoredReading) -> impl IntoView {
    let metric = reading.metric();
    view! {
        <tr>
            <td>{browser::local_time(reading.time_unix_ms)}</td>
            <td>{display::metric_name(metric)}</td>
            <td class="value">{display::reading(metric, reading.value)}</td>
        </tr>
    }
}
