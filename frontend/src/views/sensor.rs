//! A sensor tile's body: the latest value of each metric, live from the
//! home's reading stream, and the button that shows its history.

use hearth_proto::v1::Device;
use leptos::prelude::*;

use super::home::HomeState;
use crate::{
    api,
    display::{self, SENSOR_METRICS},
    tasks::spawn_scoped,
};

/// Latest temperature, humidity and pressure of `device`.
#[component]
pub fn SensorReadings(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let device_id = device.with_untracked(|d| d.id.clone());

    // Why: the stream only brings readings stored from now on; without this
    // an idle or offline sensor would show no values at all. A failure here
    // is not shown: the device poll reports an unreachable backend already.
    spawn_scoped({
        let device_id = device_id.clone();
        async move {
            if let Ok(page) = api::list_readings(&device_id, SENSOR_METRICS.len() as u32, "").await
            {
                home.latest.update(|latest| latest.apply(&page.readings));
            }
        }
    });

    let metrics = SENSOR_METRICS
        .into_iter()
        .map(|metric| {
            let device_id = device_id.clone();
            let value = move || {
                home.latest
                    .with(|latest| latest.get(&device_id, metric))
                    .map_or_else(
                        || "—".to_owned(),
                        |latest| display::reading(metric, latest.value),
                    )
            };
            view! {
                <div class="metric">
                    <dt>{display::metric_name(metric)}</dt>
                    <dd>{value}</dd>
                </div>
            }
        })
        .collect_view();

    let updated = {
        let device_id = device_id.clone();
        move || {
            let newest = home.latest.with(|latest| {
                SENSOR_METRICS
                    .into_iter()
                    .filter_map(|m| latest.get(&device_id, m))
                    .map(|l| l.time_unix_ms)
                    .max()
            });
            newest.map(|time| format!("Reading taken {}", display::time_ago(home.now.get(), time)))
        }
    };
    let shown = {
        let device_id = device_id.clone();
        move || {
            home.history_of
                .with(|shown| shown.as_ref().is_some_and(|(id, _)| *id == device_id))
        }
    };
    let label =
        move || device.with(|d| format!("Show the reading history of {}", display::device_name(d)));

    view! {
        <dl class="metrics">{metrics}</dl>
        <p class="seen">{updated}</p>
        <button
            class="history-button"
            aria-label=label
            aria-pressed=move || shown().to_string()
            on:click=move |_| home.chosen_sensor.set(Some(device_id.clone()))
        >
            "History"
        </button>
    }
}
