//! A fan or light tile's body: mode, desired and reported state, whether the
//! device acknowledged the latest command, and the ON / OFF / AUTO buttons.

use hearth_proto::v1::{Device, Mode};
use leptos::{prelude::*, task::spawn_local};

use super::{alert, home::HomeState};
use crate::{
    api::{self, ApiError},
    command::CommandState,
    display,
};

/// The modes a user can pick, in button order.
const MODES: [Mode; 3] = [Mode::On, Mode::Off, Mode::Auto];

/// State and mode buttons of actuator `device`.
#[component]
pub fn ActuatorControls(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let busy = RwSignal::new(false);
    let failure = RwSignal::new(None::<ApiError>);

    let set_mode = move |mode: Mode| {
        let device_id = device.with_untracked(|d| d.id.clone());
        busy.set(true);
        // Why not `spawn_scoped`: an event handler runs outside the view's
        // owner. If the tile is gone when the answer lands, setting its
        // disposed signals does nothing.
        spawn_local(async move {
            match api::set_mode(&device_id, mode).await {
                Ok(updated) => {
                    failure.set(None);
                    home.replace_device(updated);
                }
                Err(e) => failure.set(Some(e)),
            }
            busy.set(false);
        });
    };

    let state = move || {
        device.with(|d| match &d.reported {
            Some(reported) => display::on_off(reported.on),
            None => "unknown",
        })
    };
    let desired = move || {
        device.with(|d| match &d.desired {
            Some(desired) => format!("{} · v{}", display::on_off(desired.on), desired.version),
            None => "—".to_owned(),
        })
    };
    let reported = move || {
        device.with(|d| match &d.reported {
            Some(reported) => format!(
                "{} · applied v{}",
                display::on_off(reported.on),
                reported.applied_version
            ),
            None => "—".to_owned(),
        })
    };
    let command = Memo::new(move |_| device.with(CommandState::of));
    let buttons = MODES
        .into_iter()
        .map(|mode| {
            let label =
                move || device.with(|d| display::mode_action(mode, display::device_name(d)));
            let current = move || device.with(|d| d.mode() == mode);
            view! {
                <button
                    class="mode-button"
                    aria-label=label
                    aria-pressed=move || current().to_string()
                    disabled=move || busy.get()
                    on:click=move |_| set_mode(mode)
                >
                    {display::mode(mode)}
                </button>
            }
        })
        .collect_view();

    view! {
        <dl class="facts">
            <div><dt>"State"</dt><dd class="state">{state}</dd></div>
            <div><dt>"Mode"</dt><dd>{move || display::mode(device.with(|d| d.mode()))}</dd></div>
            <div><dt>"Desired"</dt><dd>{desired}</dd></div>
            <div><dt>"Reported"</dt><dd>{reported}</dd></div>
        </dl>
        <p class="command">
            <span class="badge" class:pending=move || matches!(command.get(), CommandState::Pending { .. })>
                {move || command.get().label()}
            </span>
            <span class="reason">{move || device.with(|d| d.desired_reason.clone())}</span>
        </p>
        <div class="modes" role="group" aria-label="Mode">{buttons}</div>
        {move || failure.get().map(|e| alert(format!("Could not set the mode: {e}.")))}
    }
}
