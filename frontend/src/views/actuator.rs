//! A fan's or light's controls: state and mode, the ON / OFF / AUTO buttons,
//! and where the latest command stands (pending until the device
//! acknowledges it, then its round trip; or why it failed). On the device's
//! page also the choice of a manual override that returns to AUTO.

use hearth_proto::v1::{Device, Mode};
use leptos::{prelude::*, task::spawn_local};

use super::{alert, home::HomeState};
use crate::{
    api::{self, ApiError},
    command::Progress,
    display,
};

/// The modes a user can pick, in button order.
const MODES: [Mode; 3] = [Mode::On, Mode::Off, Mode::Auto];

/// How long a manual ON/OFF may last before AUTO returns: (seconds, label).
const OVERRIDES: [(u32, &str); 4] = [
    (0, "until changed"),
    (15 * 60, "for 15 min"),
    (60 * 60, "for 1 hour"),
    (4 * 60 * 60, "for 4 hours"),
];

/// State, mode buttons and command progress of actuator `device`; with
/// `override_choice`, the override duration too.
#[component]
pub fn ActuatorControls(
    device: Memo<Device>,
    home: HomeState,
    override_choice: bool,
) -> impl IntoView {
    let sending = RwSignal::new(None::<Mode>);
    let failure = RwSignal::new(None::<ApiError>);
    let override_seconds = RwSignal::new(0u32);

    let set_mode = move |mode: Mode| {
        let device_id = device.with_untracked(|d| d.id.clone());
        let seconds = match mode {
            Mode::On | Mode::Off => override_seconds.get_untracked(),
            _ => 0,
        };
        sending.set(Some(mode));
        // Why not `spawn_scoped`: an event handler runs outside the view's
        // owner. If the tile is gone when the answer lands, setting its
        // disposed signals does nothing.
        spawn_local(async move {
            match api::set_mode(&device_id, mode, seconds).await {
                Ok(updated) => {
                    failure.set(None);
                    home.replace_device(updated);
                }
                Err(e) => failure.set(Some(e)),
            }
            sending.set(None);
        });
    };

    let state = move || {
        device.with(|d| match &d.reported {
            Some(reported) => display::on_off(reported.on),
            None => "unknown",
        })
    };
    let progress = Memo::new(move |_| device.with(|d| Progress::of(d, home.now.get())));
    let status = move || match sending.get() {
        Some(mode) => format!("Sending {}…", display::mode(mode)),
        None => progress.get().describe(),
    };
    let overridden = move || {
        device.with(|d| {
            (d.override_expires_unix_ms != 0).then(|| {
                format!(
                    "Manual override: back to AUTO {}",
                    display::time_until(home.now.get(), d.override_expires_unix_ms)
                )
            })
        })
    };
    let buttons = move || {
        MODES
            .into_iter()
            .map(|mode| {
                let label =
                    move || device.with(|d| display::mode_action(mode, display::device_name(d)));
                let current = move || device.with(|d| d.mode() == mode);
                view! {
                    <button
                        class="mode-button"
                        data-mode=display::mode(mode)
                        aria-label=label
                        aria-pressed=move || current().to_string()
                        disabled=move || sending.get().is_some()
                        on:click=move |_| set_mode(mode)
                    >
                        {display::mode(mode)}
                    </button>
                }
            })
            .collect_view()
    };
    let choice = move || {
        let options = OVERRIDES
            .into_iter()
            .map(|(seconds, label)| view! { <option value=seconds.to_string()>{label}</option> })
            .collect_view();
        view! {
            <label class="override">
                "ON/OFF lasts "
                <select
                    aria-label="How long a manual ON or OFF lasts before AUTO returns"
                    on:change=move |ev| {
                        override_seconds.set(event_target_value(&ev).parse().unwrap_or(0));
                    }
                >
                    {options}
                </select>
            </label>
        }
    };

    view! {
        <dl class="facts">
            <div><dt>"State"</dt><dd class="state">{state}</dd></div>
            <div><dt>"Mode"</dt><dd class="mode">{move || display::mode(device.with(|d| d.mode()))}</dd></div>
        </dl>
        <p
            class="command"
            role="status"
            class:pending=move || sending.get().is_some() || progress.get().is_pending()
            class:failed=move || progress.get().is_failure()
        >
            {status}
        </p>
        <p class="reason">{move || device.with(|d| d.desired_reason.clone())}</p>
        // Why hidden rather than disabled: a viewer cannot switch at all, and
        // buttons that never work only say so by failing.
        {move || home.controls.get().switch.then(|| view! {
            <div class="modes" role="group" aria-label="Mode">{buttons()}</div>
        })}
        {move || (override_choice && home.controls.get().switch).then(choice)}
        <p class="seen">{overridden}</p>
        {move || failure.get().map(|e| alert(format!("Could not set the mode: {e}.")))}
    }
}
