//! One home: keeps its devices (WatchDevices) and readings (WatchReadings)
//! live while any of its pages is on screen, and shows the page of the
//! route: the device tiles, a device page, or automation.

use std::time::Duration;

use gloo_timers::future::sleep;
use hearth_proto::v1::Device;
use leptos::prelude::*;

use super::{
    actuator_page::ActuatorPage, alert, automation::AutomationPage, sensor_page::SensorPage,
    tile::DeviceTile,
};
use crate::{
    api::{self, ApiError},
    auth::Auth,
    browser, command,
    live::{self, Connectivity, LiveStatus},
    readings::LatestReadings,
    route::Route,
    session::Controls,
    tasks::spawn_scoped,
};

/// How often the device list is polled from a server without WatchDevices.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How often "3 s ago" texts and the live chart's window move on.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// The state of the home on screen, shared by its pages.
#[derive(Clone, Copy)]
pub struct HomeState {
    pub home_id: StoredValue<String>,
    /// `None` until the first answer.
    pub devices: RwSignal<Option<Vec<Device>>>,
    pub latest: RwSignal<LatestReadings>,
    /// The browser's clock, Unix ms, ticking every second.
    pub now: RwSignal<i64>,
    /// What the caller's role in the home lets them use.
    pub controls: Signal<Controls>,
}

impl HomeState {
    /// Puts a device as an RPC returned it in place of the held copy, so a
    /// command shows before the stream brings it (unless the stream already
    /// brought a copy further along).
    pub fn replace_device(&self, device: Device) {
        self.devices.update(|devices| merge(devices, vec![device]));
    }

    /// The held copy of device `id`, changing only when that device does.
    pub fn device(&self, id: String) -> Memo<Option<Device>> {
        let devices = self.devices;
        Memo::new(move |_| {
            devices.with(|devices| devices.iter().flatten().find(|d| d.id == id).cloned())
        })
    }
}

/// Takes changed devices into the held list: replaces by id unless the held
/// copy is further along (a late answer), appends new ones.
fn merge(held: &mut Option<Vec<Device>>, changed: Vec<Device>) {
    let held = held.get_or_insert_with(Vec::new);
    for device in changed {
        match held.iter_mut().find(|d| d.id == device.id) {
            Some(slot) if command::is_ahead(slot, &device) => {}
            Some(slot) => *slot = device,
            None => held.push(device),
        }
    }
}

/// The page of a home that a route shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Page {
    Tiles,
    Device(String),
    Automation,
}

/// Home `home_id` with the page `route` shows.
#[component]
pub fn HomeScope(home_id: String, route: RwSignal<Route>) -> impl IntoView {
    let auth = Auth::get();
    let home = HomeState {
        home_id: StoredValue::new(home_id.clone()),
        devices: RwSignal::new(None),
        latest: RwSignal::new(LatestReadings::default()),
        now: RwSignal::new(browser::now_unix_ms()),
        // Why a memo: the controls change only with a role, not with every
        // renewal of the session.
        controls: Memo::new({
            let home_id = home_id.clone();
            move |_| auth.controls(&home_id)
        })
        .into(),
    };
    let devices_status = RwSignal::new(LiveStatus::Connecting);
    let readings_status = RwSignal::new(LiveStatus::Connecting);
    let poll_error = RwSignal::new(None::<ApiError>);
    let connectivity = Connectivity::get();

    spawn_scoped(follow_devices(
        home,
        devices_status,
        poll_error,
        connectivity,
    ));
    spawn_scoped({
        let home_id = home_id.clone();
        async move {
            live::follow(
                move || {
                    let home_id = home_id.clone();
                    // Why no resume: the tiles show the newest reading,
                    // which the next one replaces anyway.
                    async move { api::watch_readings(&home_id, Vec::new(), &[], 0).await }
                },
                move |message: hearth_proto::v1::WatchReadingsResponse, _| {
                    home.latest.update(|held| held.apply(&message.readings));
                },
                readings_status,
                connectivity,
            )
            .await;
        }
    });
    spawn_scoped(tick(home.now));

    let page = Memo::new(move |_| {
        route.with(|r| match r {
            Route::Device { device, .. } => Page::Device(device.clone()),
            Route::Automation(_) => Page::Automation,
            _ => Page::Tiles,
        })
    });

    view! {
        <section class="home" aria-labelledby="home-title">
            <div class="home-head">
                <h2 id="home-title">"Home " <code>{home_id.clone()}</code></h2>
                <LiveIndicator devices=devices_status readings=readings_status />
            </div>
            {move || poll_error.get().map(|e| alert(format!("Device state is not up to date: {e}.")))}
            {move || match page.get() {
                Page::Tiles => view! { <Tiles home /> }.into_any(),
                Page::Automation => view! { <AutomationPage home /> }.into_any(),
                Page::Device(id) => view! { <DevicePage home id /> }.into_any(),
            }}
        </section>
    }
}

/// The home's devices as tiles.
#[component]
fn Tiles(home: HomeState) -> impl IntoView {
    let devices = home.devices;
    let tiles = move || devices.get().unwrap_or_default();
    view! {
        {move || match devices.with(|d| d.as_ref().map(Vec::is_empty)) {
            None => Some(view! { <p class="hint">"Loading devices…"</p> }.into_any()),
            Some(true) => {
                let message = format!(
                    "No devices are registered in home {}.",
                    home.home_id.get_value()
                );
                Some(view! { <p class="hint">{message}</p> }.into_any())
            }
            Some(false) => None,
        }}
        <div class="tiles">
            <For each=tiles key=|device| device.id.clone() let:device>
                <DeviceTile device=held(home, device) home />
            </For>
        </div>
    }
}

/// The held copy of `device` (the copy it was first shown with once it is
/// gone), changing only when the device does.
fn held(home: HomeState, device: Device) -> Memo<Device> {
    let current = home.device(device.id.clone());
    Memo::new(move |_| current.get().unwrap_or_else(|| device.clone()))
}

/// A sensor's or an actuator's page, by the kind of device `id`.
#[component]
fn DevicePage(home: HomeState, id: String) -> impl IntoView {
    let device = home.device(id.clone());
    let kind = Memo::new(move |_| device.with(|d| d.as_ref().map(Device::kind)));
    move || match kind.get() {
        None if home.devices.with(Option::is_none) => {
            view! { <p class="hint">"Loading devices…"</p> }.into_any()
        }
        None => alert(format!(
            "Home {} has no device {id}.",
            home.home_id.get_value()
        ))
        .into_any(),
        Some(hearth_proto::v1::DeviceKind::Sensor) => {
            let device = Memo::new(move |_| device.get().unwrap_or_default());
            view! { <SensorPage device home /> }.into_any()
        }
        Some(_) => {
            let device = Memo::new(move |_| device.get().unwrap_or_default());
            view! { <ActuatorPage device home /> }.into_any()
        }
    }
}

/// Whether device updates and live readings are flowing.
#[component]
fn LiveIndicator(devices: RwSignal<LiveStatus>, readings: RwSignal<LiveStatus>) -> impl IntoView {
    let describe = |what: &str, status: LiveStatus| match status {
        LiveStatus::Connecting => format!("{what}: connecting…"),
        LiveStatus::Live => format!("{what}: live"),
        LiveStatus::Reconnecting {
            attempt, retry_in, ..
        } => format!(
            "{what}: reconnecting (attempt {attempt}, next in {} s)",
            retry_in.as_secs()
        ),
        LiveStatus::Refused { reason } => format!("{what}: {reason}"),
    };
    let all_live = move || devices.get() == LiveStatus::Live && readings.get() == LiveStatus::Live;
    view! {
        <p class="live" class:is-live=all_live role="status">
            <span>{move || describe("Devices", devices.get())}</span>
            " · "
            <span>{move || describe("Readings", readings.get())}</span>
        </p>
    }
}

/// Keeps `home.devices` current: the WatchDevices stream, or polling
/// ListDevices on a server that does not offer the stream.
async fn follow_devices(
    home: HomeState,
    status: RwSignal<LiveStatus>,
    poll_error: RwSignal<Option<ApiError>>,
    connectivity: Connectivity,
) {
    let home_id = home.home_id.get_value();
    let refused = live::follow(
        {
            let home_id = home_id.clone();
            move || {
                let home_id = home_id.clone();
                async move { api::watch_devices(&home_id).await }
            }
        },
        move |message: hearth_proto::v1::WatchDevicesResponse, first| {
            home.devices.update(|held| {
                // Why: the first message after a (re)connect is every device,
                // so devices removed meanwhile go too.
                if first {
                    *held = Some(Vec::new());
                }
                merge(held, message.devices);
            });
        },
        status,
        connectivity,
    )
    .await;
    if !matches!(refused, ApiError::Unimplemented(_)) {
        return;
    }
    status.set(LiveStatus::Refused {
        reason: format!("polled every {} s", POLL_EVERY.as_secs()),
    });
    loop {
        match api::list_devices(&home_id).await {
            Ok(list) => {
                home.devices.set(Some(list));
                poll_error.set(None);
            }
            // Why keep the old list: stale tiles under an error say more than none.
            Err(e) => poll_error.set(Some(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, online: bool) -> Device {
        Device {
            id: id.into(),
            online,
            ..Default::default()
        }
    }

    #[test]
    fn changed_devices_replace_held_ones_and_new_ones_join() {
        let mut held = Some(vec![device("a", true), device("b", true)]);
        merge(&mut held, vec![device("b", false), device("c", true)]);
        let held = held.expect("some");
        let state: Vec<(&str, bool)> = held.iter().map(|d| (d.id.as_str(), d.online)).collect();
        assert_eq!(state, [("a", true), ("b", false), ("c", true)]);
    }

    #[test]
    fn a_copy_behind_the_held_one_is_ignored() {
        let mut acknowledged = device("fan", true);
        acknowledged.reported = Some(hearth_proto::v1::ReportedState {
            applied_version: 3,
            on: true,
            time_unix_ms: 1,
        });
        let mut late = device("fan", true);
        late.reported = Some(hearth_proto::v1::ReportedState {
            applied_version: 2,
            on: false,
            time_unix_ms: 0,
        });
        let mut held = Some(vec![acknowledged.clone()]);
        merge(&mut held, vec![late]);
        assert_eq!(held, Some(vec![acknowledged]));
    }
}
