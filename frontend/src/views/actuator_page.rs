//! A fan's or light's page: its controls with the override choice, and the
//! recent commands sent to it: who (the web app, a rule) and why, and what
//! became of each (applied with its round trip, expired, superseded).

use hearth_proto::v1::{Command, Device};
use leptos::prelude::*;

use super::{
    actuator::ActuatorControls,
    home::HomeState,
    loaded::{table, Column, Loaded, Loader, Shown},
};
use crate::{api, browser, display};

/// Commands listed.
const COMMANDS: u32 = 20;

/// The page of actuator `device`.
#[component]
pub fn ActuatorPage(device: Memo<Device>, home: HomeState) -> impl IntoView {
    let name = move || device.with(|d| display::device_name(d).to_owned());
    // Why: the list changes when a command is sent or moves on; reloading on
    // every device update (presence, last seen) would be waste.
    let latest_command = Memo::new(move |_| {
        device.with(|d| {
            let command = d.last_command.as_ref().map(|c| (c.version, c.state));
            let versions = (
                d.desired.as_ref().map(|s| s.version),
                d.reported.as_ref().map(|s| s.applied_version),
            );
            (command, versions)
        })
    });
    let commands = Loader::new(move || {
        latest_command.track();
        let device_id = device.with_untracked(|d| d.id.clone());
        async move {
            let answer = api::list_commands(&device_id, COMMANDS).await;
            Shown::of("the commands", answer, |list| command_table(list))
        }
    });

    view! {
        <article class="device-page">
            <h2 class="page-title">{name} " " <span class="kind">{move || display::kind(device.with(|d| d.kind()))}</span></h2>
            <div class="panel">
                <ActuatorControls device home override_choice=true />
            </div>
            <section class="panel" aria-labelledby="commands-title">
                <h3 id="commands-title">"Recent commands"</h3>
                <Loaded loader=commands loading="Loading commands…" />
            </section>
        </article>
    }
}

const COLUMNS: &[Column] = &[
    Column("Sent", ""),
    Column("State", ""),
    Column("By", ""),
    Column("Why", "wrap"),
    Column("Outcome", ""),
    Column("Round trip", "value"),
];

fn command_table(commands: &[Command]) -> AnyView {
    let rows = commands
        .iter()
        .map(|c| {
            let round_trip = if c.round_trip_us > 0 {
                display::round_trip(c.round_trip_us)
            } else {
                String::new()
            };
            vec![
                browser::local_time(c.requested_unix_ms),
                display::on_off(c.on).to_ascii_uppercase(),
                display::requested_by(&c.requested_by),
                c.reason.clone(),
                display::command_state(c.state()).to_owned(),
                round_trip,
            ]
        })
        .collect();
    table("readings commands", COLUMNS, rows, "No commands sent yet.")
}
