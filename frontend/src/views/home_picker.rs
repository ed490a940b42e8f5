//! The Home ID field: type an id or pick one of the homes the backend lists;
//! the choice is remembered for the next visit.

use hearth_proto::{ids::check_id, v1::Home};
use leptos::prelude::*;

use super::alert;
use crate::{api, tasks::spawn_scoped};

/// Calls `choose` with the home the user asks for; with none on screen yet,
/// with the first home the backend lists.
#[component]
pub fn HomePicker(
    chosen: Signal<Option<String>>,
    choose: impl Fn(String) + Copy + 'static,
) -> impl IntoView {
    let draft = RwSignal::new(chosen.get_untracked().unwrap_or_default());
    let problem = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(home) = chosen.get() {
            draft.set(home);
        }
    });

    let submit = move |home_id: String| match check_id(&home_id) {
        Ok(()) => {
            problem.set(None);
            choose(home_id);
        }
        Err(why) => problem.set(Some(format!("A home ID {why}."))),
    };

    let homes = RwSignal::new(Vec::<Home>::new());
    let failure = RwSignal::new(None::<String>);
    spawn_scoped(async move {
        match api::list_homes().await {
            Ok(list) => {
                if let (Some(first), None) = (list.first(), chosen.get_untracked()) {
                    submit(first.id.clone());
                }
                homes.set(list);
            }
            Err(e) => failure.set(Some(format!("Cannot list homes: {e}."))),
        }
    });

    view! {
        <form
            class="home-picker"
            on:submit=move |ev| {
                ev.prevent_default();
                submit(draft.get_untracked().trim().to_owned());
            }
        >
            <label for="home-id">"Home"</label>
            <input
                id="home-id"
                list="home-ids"
                autocomplete="off"
                spellcheck="false"
                placeholder="home id"
                aria-label="Home ID"
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
            />
            <datalist id="home-ids">
                {move || {
                    homes
                        .get()
                        .into_iter()
                        .map(|home| view! { <option value=home.id>{home.name}</option> })
                        .collect_view()
                }}
            </datalist>
            <button type="submit" aria-label="Show this home">"Show"</button>
        </form>
        {move || problem.get().map(alert)}
        {move || failure.get().map(alert)}
    }
}
