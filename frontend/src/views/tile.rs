//! A device tile: name (a link to the device's page), kind, online/offline
//! and last seen, over the body its kind calls for.

use hearth_proto::v1::{Device, DeviceKind};
use leptos::prelude::*;

use super::{actuator::ActuatorControls, home::HomeState, sensor::SensorReadings, Link};
use crate::{display, route::Route};

/// One device of the home on screen.
#[component]
pub fn DeviceTile(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let (kind, id) = device.with_untracked(|d| (d.kind(), d.id.clone()));
    let body = match kind {
        DeviceKind::Sensor => view! { <SensorReadings device home /> }.into_any(),
        DeviceKind::Fan | DeviceKind::Light => {
            view! { <ActuatorControls device home override_choice=false /> }.into_any()
        }
        DeviceKind::Unspecified => ().into_any(),
    };
    let online = move || device.with(|d| d.online);
    let last_seen = move || display::time_ago(home.now.get(), device.with(|d| d.last_seen_unix_ms));
    let to = Route::Device {
        home: home.home_id.get_value(),
        device: id.clone(),
    };

    view! {
        <article class="tile" class:offline=move || !online() data-device=id>
            <header class="tile-head">
                <h3>
                    <Link to class="tile-link">
                        {move || device.with(|d| display::device_name(d).to_owned())}
                    </Link>
                </h3>
                <span class="kind">{display::kind(kind)}</span>
                <span class="presence">{move || if online() { "online" } else { "offline" }}</span>
            </header>
            <p class="seen">"Last seen " <span class="ago">{last_seen}</span></p>
            {body}
        </article>
    }
}
