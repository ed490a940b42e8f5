//! The page, one component per file: [`app`] lays out the header with the
//! [`home_picker`] and the [`home`] on screen, whose device [`tile`]s hold
//! [`sensor`] readings or [`actuator`] controls, above a sensor's [`history`].

pub mod actuator;
pub mod app;
pub mod history;
pub mod home;
pub mod home_picker;
pub mod sensor;
pub mod tile;

use leptos::prelude::*;

/// An error the user should see, announced by screen readers as it appears.
fn alert(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}
