//! The page, one component per file: [`app`] holds the header, the
//! connection banner and the route on screen; inside a home ([`home`]) the
//! device [`tile`]s hold [`sensor`] readings or [`actuator`] controls, a
//! device page is a [`sensor_page`] (charts, [`history`]) or an
//! [`actuator_page`] (controls, commands), and [`automation`] edits rules.
//! [`chart`] draws SVG charts for all of them; [`loaded`] shows what they
//! load from the backend. [`login`] stands in for all of it while the
//! backend wants a login.

pub mod actuator;
pub mod actuator_page;
pub mod app;
pub mod automation;
pub mod chart;
pub mod history;
pub mod home;
pub mod home_picker;
pub mod loaded;
pub mod login;
pub mod sensor;
pub mod sensor_page;
pub mod tile;

use leptos::{ev::MouseEvent, prelude::*};

use crate::{browser, route::Route};

/// An error the user should see, announced by screen readers as it appears.
fn alert(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}

/// The route on screen, provided as context by [`app::App`].
#[derive(Debug, Clone, Copy)]
pub struct Router(pub RwSignal<Route>);

impl Router {
    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Goes to `route`, as a new history entry.
    pub fn go(&self, route: Route) {
        browser::set_path(&route.path(), false);
        self.0.set(route);
    }
}

/// A link to `to` that switches the page without reloading it (a plain link
/// still, so it opens in a new tab and reloads fine).
#[component]
fn Link(to: Route, children: Children, #[prop(optional, into)] class: String) -> impl IntoView {
    let href = to.path();
    let router = Router::get();
    let follow = move |ev: MouseEvent| {
        if ev.button() == 0 && !(ev.ctrl_key() || ev.meta_key() || ev.shift_key() || ev.alt_key()) {
            ev.prevent_default();
            router.go(to.clone());
        }
    };
    view! { <a href=href class=class on:click=follow>{children()}</a> }
}
