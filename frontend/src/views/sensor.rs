//! A sensor tile's body: the latest value of each metric, live from the
//! home's reading stream, and the delivery of the last day.

use std::time::Duration;

use gloo_timers::future::sleep;
use hearth_proto::v1::{Delivery, Device, Metric};
use leptos::prelude::*;

use super::home::HomeState;
use crate::{
    api,
    display::{self, SENSOR_METRICS},
    tasks::spawn_scoped,
};

/// How often a tile asks again how many readings arrived.
const DELIVERY_EVERY: Duration = Duration::from_secs(60);

/// Latest temperature, humidity and pressure of `device`, and how many of
/// its readings of the last day arrived (marked when some did not).
#[component]
pub fn SensorReadings(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let device_id = device.with_untracked(|d| d.id.clone());

    // Why: the stream only brings readings stored from now on; without this
    // an idle or offline sensor would show no values at all. A failure here
    // is not shown: the device stream reports an unreachable backend already.
    spawn_scoped({
        let device_id = device_id.clone();
        async move {
            let page = api::list_readings(
                &device_id,
                Metric::Unspecified,
                0,
                SENSOR_METRICS.len() as u32,
                "",
            )
            .await;
            if let Ok(page) = page {
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
                <div class="metric" data-metric=metric.short_name()>
                    <dt>{display::metric_name(metric)}</dt>
                    <dd>{value}</dd>
                </div>
            }
        })
        .collect_view();

    let delivery_of = device_id.clone();
    let updated = move || {
        let newest = home.latest.with(|latest| {
            SENSOR_METRICS
                .into_iter()
                .filter_map(|m| latest.get(&device_id, m))
                .map(|l| l.time_unix_ms)
                .max()
        });
        match newest {
            Some(time) => format!("Reading taken {}", display::time_ago(home.now.get(), time)),
            None => "No readings yet".to_owned(),
        }
    };

    // How many readings of the last day arrived, asked again every minute.
    // A failure leaves the line as it was (the device stream shows outages).
    let delivery = RwSignal::new(None::<Delivery>);
    spawn_scoped({
        let device_id = delivery_of;
        async move {
            loop {
                if let Ok(found) = api::get_delivery(&device_id).await {
                    delivery.set(Some(found));
                }
                sleep(DELIVERY_EVERY).await;
            }
        }
    });
    let delivered = move || {
        delivery.with(|d| {
            let d = d.as_ref()?;
            let total = d.total.as_ref()?;
            display::delivery(
                total.expected,
                total.stored,
                total.late,
                d.last_loss_unix_ms,
                home.now.get(),
            )
        })
    };
    let lossy = move || {
        delivery.with(|d| {
            d.as_ref()
                .and_then(|d| d.total.as_ref())
                .is_some_and(|t| t.missing > 0)
        })
    };

    view! {
        <dl class="metrics">{metrics}</dl>
        <p class="seen">{updated}</p>
        <p class="delivery" class:lossy=lossy>{delivered}</p>
    }
}
