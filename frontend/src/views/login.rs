//! The login page: shown in place of the app's pages while the backend wants
//! a login (users exist and this tab has no working session). Logging in
//! swaps the pages back, on the route the user was on, without a reload.

use leptos::{prelude::*, task::spawn_local};

use super::alert;
use crate::auth::Auth;

/// The username and password form; `why` says why it is shown, when a
/// session just ended.
#[component]
pub fn Login(auth: Auth, why: Option<&'static str>) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let sending = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        sending.set(true);
        spawn_local(async move {
            let answer = auth
                .log_in(username.get_untracked(), password.get_untracked())
                .await;
            // Why only on failure: success replaces this page, and with it
            // these signals.
            if let Err(e) = answer {
                failure.set(Some(e.to_string()));
                password.set(String::new());
                sending.set(false);
            }
        });
    };

    view! {
        <section class="login panel" aria-labelledby="login-title">
            <h2 id="login-title">"Log in"</h2>
            {why.map(|why| view! { <p class="hint">{why}</p> })}
            <form on:submit=submit>
                <label>
                    "User name"
                    <input
                        id="username"
                        name="username"
                        autocomplete="username"
                        autocapitalize="none"
                        spellcheck="false"
                        required
                        prop:value=move || username.get()
                        on:input=move |ev| username.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "Password"
                    <input
                        id="password"
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        required
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))
                    />
                </label>
                <button type="submit" disabled=move || sending.get()>"Log in"</button>
            </form>
            {move || failure.get().map(alert)}
        </section>
    }
}
