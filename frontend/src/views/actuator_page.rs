//! A fan's or light's page: its controls with the override choice, and the
//! recent commands sent to it: who (the web app, a rule) and why, and what
//! became of each (applied with its round trip, expired, superseded).

use hearth_proto::v1::{Command, Device};
use leptos::prelude::*;

use super::{actuator::ActuatorControls, alert, home::HomeState};
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
    let commands = LocalResource::new(move || {
        latest_command.track();
        let device_id = device.with_untracked(|d| d.id.clone());
        async move { api::list_commands(&device_id, COMMANDS).await }
    });

    view! {
        <article class="device-page">
            <h2 class="page-title">{name} " " <span class="kind">{move || display::kind(device.with(|d| d.kind()))}</span></h2>
            <div class="panel">
                <ActuatorControls device home override_choice=true />
            </div>
            <section class="panel" aria-labelledby="commands-title">
                <h3 id="commands-title">"Recent commands"</h3>
                <Transition fallback=|| view! { <p class="hint">"Loading commands…"</p> }>
                    {move || Suspend::new(async move {
                        match commands.await {
                            Ok(list) => command_table(list).into_any(),
                            Err(e) => alert(format!("Cannot load the commands: {e}.")).into_any(),
                        }
                    })}
                </Transition>
            </section>
        </article>
    }
}

fn command_table(commands: Vec<Command>) -> impl IntoView {
    if commands.is_empty() {
        return view! { <p class="hint">"No commands sent yet."</p> }.into_any();
    }
    let rows = commands
        .into_iter()
        .map(|c| {
            let round_trip = if c.round_trip_us > 0 {
                display::round_trip(c.round_trip_us)
            } else {
                String::new()
            };
            view! {
                <tr>
                    <td>{browser::local_time(c.requested_unix_ms)}</td>
                    <td>{display::on_off(c.on).to_uppercase()}</td>
                    <td>{display::requested_by(&c.requested_by)}</td>
                    <td class="wrap">{c.reason.clone()}</td>
                    <td>{display::command_state(c.state())}</td>
                    <td class="value">{round_trip}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table class="readings commands">
                <thead>
                    <tr>
                        <th scope="col">"Sent"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"By"</th>
                        <th scope="col">"Why"</th>
                        <th scope="col">"Outcome"</th>
                        <th scope="col" class="value">"Round trip"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
