//! The root component: the header with the home picker and the home's pages,
//! the "disconnected" banner, and the page of the route on screen.

use leptos::prelude::*;

use super::{home::HomeScope, home_picker::HomePicker, Link, Router};
use crate::{browser, live::Connectivity, route::Route};

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let connectivity = Connectivity::new();
    provide_context(connectivity);

    let mut start = Route::parse(&browser::path());
    if start == Route::Start {
        if let Some(home) = browser::remembered_home() {
            start = Route::Home(home);
            browser::set_path(&start.path(), true);
        }
    }
    let route = RwSignal::new(start);
    let router = Router(route);
    provide_context(router);
    let handle = window_event_listener(leptos::ev::popstate, move |_| {
        route.set(Route::parse(&browser::path()));
    });
    on_cleanup(move || handle.remove());

    // Why a memo: moving between pages of one home must not rebuild the
    // home (and reopen its streams).
    let home_id = Memo::new(move |_| route.with(|r| r.home().map(str::to_owned)));
    let chosen = Signal::derive(move || home_id.get());
    let choose = move |home: String| {
        browser::remember_home(&home);
        router.go(Route::Home(home));
    };

    view! {
        <header class="topbar">
            <h1><Link to=Route::Start class="brand">"Hearth"</Link></h1>
            <HomePicker chosen choose />
            {move || home_id.get().map(|home| view! { <HomeNav home route /> })}
        </header>
        <Banner connectivity />
        <main>
            {move || match home_id.get() {
                Some(home_id) => view! { <HomeScope home_id route /> }.into_any(),
                None => match route.get() {
                    Route::Unknown(path) => view! {
                        <p class="hint">"Nothing here (" <code>{path}</code> "). Choose a home."</p>
                    }
                    .into_any(),
                    _ => view! { <p class="hint">"Choose a home to see its devices."</p> }.into_any(),
                },
            }}
        </main>
    }
}

/// Devices | Automation of the home on screen.
#[component]
fn HomeNav(home: String, route: RwSignal<Route>) -> impl IntoView {
    let on_automation = move || route.with(|r| matches!(r, Route::Automation(_)));
    view! {
        <nav class="home-nav" aria-label="Home pages">
            <Link to=Route::Home(home.clone()) class="tab">
                <span aria-current=move || (!on_automation()).then_some("page")>"Devices"</span>
            </Link>
            <Link to=Route::Automation(home) class="tab">
                <span aria-current=move || on_automation().then_some("page")>"Automation"</span>
            </Link>
        </nav>
    }
}

/// Says so while a live stream is down; the streams reconnect on their own.
#[component]
fn Banner(connectivity: Connectivity) -> impl IntoView {
    view! {
        <div class="banner-slot" aria-live="polite">
            {move || {
                connectivity
                    .problem()
                    .map(|why| {
                        view! {
                            <p class="banner" role="status">
                                <strong>"Disconnected — reconnecting…"</strong>
                                " "
                                <span class="why">{why}</span>
                            </p>
                        }
                    })
            }}
        </div>
    }
}
