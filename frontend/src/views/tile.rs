//! A device tile: name, kind, online/offline and last seen, over the body its
//! kind calls for.

use hearth_proto::v1::{Device, DeviceKind};
use leptos::prelude::*;

use super::{actuator::ActuatorControls, home::HomeState, sensor::SensorReadings};
use crate::display;

/// One device of the home on screen.
#[component]
pub fn DeviceTile(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let kind = device.with_untracked(|d| d.kind());
    let body = match kind {
        DeviceKind::Sensor => view! { <SensorReadings device home /> }.into_any(),
        DeviceKind::Fan | DeviceKind::Light => {
            view! { <ActuatorControls device home /> }.into_any()
        }
        DeviceKind::Unspecified => ().into_any(),
    };
    let online = move || device.with(|d| d.online);
    let last_seen = move || display::time_ago(home.now.get(), device.with(|d| d.last_seen_unix_ms));

    view! {
        <article class="tile" class:offline=move || !online()>
            <header class="tile-head">
                <h3>{move || device.with(|d| display::device_name(d).to_owned())}</h3>
                <span class="kind">{display::kind(kind)}</span>
                <span class="presence">{move || if online() { "online" } else { "offline" }}</span>
            </header>
            <p class="seen">"Last seen " {last_seen}</p>
            {body}
        </article>
    }
}
