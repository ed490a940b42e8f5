//! The root component: the header with the home picker, the home's pages
//! and the signed-in user, the "disconnected" banner, and the page of the
//! route on screen, or the login page while the backend wants a login.

use leptos::prelude::*;

use super::{home::HomeScope, home_picker::HomePicker, login::Login, Link, Router};
use crate::{
    auth::{Auth, Gate},
    browser,
    live::Connectivity,
    route::Route,
    tasks::spawn_scoped,
};

/// The part of the [`Gate`] that decides the page.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Checking(Option<String>),
    In,
    Out(Option<&'static str>),
}

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let connectivity = Connectivity::new();
    provide_context(connectivity);
    let auth = Auth::start();
    provide_context(auth);
    // Why a memo: a renewal that changes the roles must not rebuild the page.
    let stage = Memo::new(move |_| match auth.gate() {
        Gate::Checking(why) => Stage::Checking(why),
        Gate::In(_) => Stage::In,
        Gate::Out(why) => Stage::Out(why),
    });

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

    let signed_in = move || stage.get() == Stage::In;
    view! {
        <header class="topbar">
            <h1><Link to=Route::Start class="brand">"Hearth"</Link></h1>
            {move || signed_in().then(|| view! { <HomePicker chosen choose /> })}
            {move || {
                home_id.get().filter(|_| signed_in()).map(|home| view! { <HomeNav home route /> })
            }}
            {move || auth.user().map(|name| view! { <LogOut name auth /> })}
        </header>
        <Banner connectivity />
        <main>
            {move || match stage.get() {
                Stage::Checking(why) => view! {
                    <p class="hint">
                        {match why {
                            Some(why) => format!("Cannot reach Hearth ({why}); trying again…"),
                            None => "Connecting…".to_owned(),
                        }}
                    </p>
                }
                .into_any(),
                Stage::Out(why) => view! { <Login auth why /> }.into_any(),
                Stage::In => {
                    // Why here: the renewals run while signed in, and stop
                    // with the pages when the session ends.
                    spawn_scoped(auth.keep_renewed());
                    view! { <RoutePage home_id route /> }.into_any()
                }
            }}
        </main>
    }
}

/// The page of the route on screen: a home's, or a hint to choose one.
#[component]
fn RoutePage(home_id: Memo<Option<String>>, route: RwSignal<Route>) -> impl IntoView {
    move || match home_id.get() {
        Some(home_id) => view! { <HomeScope home_id route /> }.into_any(),
        None => match route.get() {
            Route::Unknown(path) => view! {
                <p class="hint">"Nothing here (" <code>{path}</code> "). Choose a home."</p>
            }
            .into_any(),
            _ => view! { <p class="hint">"Choose a home to see its devices."</p> }.into_any(),
        },
    }
}

/// Who is signed in, and the button that ends the session.
#[component]
fn LogOut(name: String, auth: Auth) -> impl IntoView {
    view! {
        <div class="user">
            <span class="user-name">{name}</span>
            <button id="log-out" type="button" on:click=move |_| auth.log_out()>"Log out"</button>
        </div>
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
