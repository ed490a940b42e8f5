//! One home: its devices as tiles, the live-feed indicator, and the reading
//! history of one sensor. Device state is polled (no device-state stream
//! exists yet); readings arrive live.

use std::time::Duration;

use gloo_timers::future::sleep;
use hearth_proto::v1::{Device, DeviceKind};
use leptos::prelude::*;

use super::{alert, history::History, tile::DeviceTile};
use crate::{
    api::{self, ApiError},
    browser, display,
    live::{self, LiveStatus},
    readings::LatestReadings,
    tasks::spawn_scoped,
};

/// How often the device list (state, presence, last seen) is refreshed.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How often "3 s ago" texts move on.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// The state of the home on screen, shared by its tiles.
#[derive(Clone, Copy)]
pub struct HomeState {
    /// `None` until the first ListDevices answer.
    pub devices: RwSignal<Option<Vec<Device>>>,
    pub latest: RwSignal<LatestReadings>,
    /// The browser's clock, Unix ms, ticking every second.
    pub now: RwSignal<i64>,
    /// The sensor whose history the user asked for.
    pub chosen_sensor: RwSignal<Option<String>>,
    /// `(id, name)` of the sensor whose history is shown: the chosen one, else the first.
    pub history_of: Memo<Option<(String, String)>>,
}

impl HomeState {
    /// Puts a device as an RPC returned it in place of the polled copy, so a
    /// command shows before the next poll.
    pub fn replace_device(&self, device: Device) {
        self.devices.update(|devices| {
            if let Some(held) = devices.iter_mut().flatten().find(|d| d.id == device.id) {
                *held = device;
            }
        });
    }
}

/// The devices of `home_id`, kept up to date while on screen.
#[component]
pub fn HomeView(home_id: String) -> impl IntoView {
    let devices = RwSignal::new(None::<Vec<Device>>);
    let chosen_sensor = RwSignal::new(None::<String>);
    let history_of = Memo::new(move |_| {
        let chosen = chosen_sensor.get();
        devices.with(|devices| {
            let sensors: Vec<&Device> = devices
                .iter()
                .flatten()
                .filter(|d| d.kind() == DeviceKind::Sensor)
                .collect();
            let shown = sensors
                .iter()
                .find(|d| chosen.as_ref() == Some(&d.id))
                .or(sensors.first());
            shown.map(|d| (d.id.clone(), display::device_name(d).to_owned()))
        })
    });
    let home = HomeState {
        devices,
        latest: RwSignal::new(LatestReadings::default()),
        now: RwSignal::new(browser::now_unix_ms()),
        chosen_sensor,
        history_of,
    };
    let poll_error = RwSignal::new(None::<ApiError>);
    let live = RwSignal::new(LiveStatus::Connecting);

    spawn_scoped(poll_devices(home_id.clone(), devices, poll_error));
    spawn_scoped(live::follow(home_id.clone(), home.latest, live));
    spawn_scoped(tick(home.now));

    let tiles = move || devices.get().unwrap_or_default();
    view! {
        <section class="home" aria-labelledby="home-title">
            <div class="home-head">
                <h2 id="home-title">"Home " <code>{home_id.clone()}</code></h2>
                <LiveIndicator status=live />
            </div>
            {move || poll_error.get().map(|e| alert(format!("Device state is not up to date: {e}.")))}
            {move || match devices.with(|d| d.as_ref().map(Vec::is_empty)) {
                None => Some(view! { <p class="hint">"Loading devices…"</p> }.into_any()),
                Some(true) => {
                    let message = format!("No devices are registered in home {home_id}.");
                    Some(view! { <p class="hint">{message}</p> }.into_any())
                }
                Some(false) => None,
            }}
            <div class="tiles">
                <For each=tiles key=|device| device.id.clone() let:device>
                    <DeviceTile device=polled(devices, device) home />
                </For>
            </div>
            {move || history_of.get().map(|(device_id, name)| view! { <History device_id name /> })}
        </section>
    }
}

/// The latest polled copy of `device` (the copy it was first shown with once
/// it is gone), changing only when the device does.
fn polled(devices: RwSignal<Option<Vec<Device>>>, device: Device) -> Memo<Device> {
    Memo::new(move |_| {
        devices
            .with(|devices| {
                devices
                    .iter()
                    .flatten()
                    .find(|d| d.id == device.id)
                    .cloned()
            })
            .unwrap_or_else(|| device.clone())
    })
}

/// Whether live readings are flowing.
#[component]
fn LiveIndicator(status: RwSignal<LiveStatus>) -> impl IntoView {
    let text = move || match status.get() {
        LiveStatus::Connecting => "Connecting to live readings…".to_owned(),
        LiveStatus::Live => "Live".to_owned(),
        LiveStatus::Reconnecting { reason } => format!("Live readings paused: {reason}; retrying."),
        LiveStatus::Refused { reason } => format!("No live readings: {reason}."),
    };
    view! {
        <p class="live" class:is-live=move || status.get() == LiveStatus::Live role="status">
            {text}
        </p>
    }
}

async fn poll_devices(
    home_id: String,
    devices: RwSignal<Option<Vec<Device>>>,
    error: RwSignal<Option<ApiError>>,
) {
    loop {
        match api::list_devices(&home_id).await {
            Ok(list) => {
                devices.set(Some(list));
                error.set(None);
            }
            // Why keep the old list: stale tiles under an error say more than none.
            Err(e) => error.set(Some(e)),
        }
        sleep(POLL_EVERY).await;
    }
}

async fn tick(now: RwSignal<i64>) {
    loop {
        sleep(TICK_EVERY).await;
        now.set(browser::now_unix_ms());
    }
}
