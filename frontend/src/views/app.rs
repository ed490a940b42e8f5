//! The root component: the header with the home picker, and the chosen home.

use leptos::prelude::*;

use super::{home::HomeView, home_picker::HomePicker};
use crate::browser;

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let chosen = RwSignal::new(browser::remembered_home());
    // Why a memo: choosing the home already shown must not rebuild it (and
    // reopen its stream).
    let home_id = Memo::new(move |_| chosen.get());

    view! {
        <header class="topbar">
            <h1>"Hearth"</h1>
            <HomePicker chosen />
        </header>
        <main>
            {move || match home_id.get() {
                Some(home_id) => view! { <HomeView home_id /> }.into_any(),
                None => view! { <p class="hint">"Choose a home to see its devices."</p> }.into_any(),
            }}
        </main>
    }
}
