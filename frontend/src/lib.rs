//! Hearth's web app: Leptos, rendered in the browser, talking gRPC-web to the
//! backend that serves it.
//!
//! - [`views`]: the components, one file per part of the page; `App` is the root.
//! - `api`: every network call, through the generated `hearth.v1` clients.
//! - `auth`: who uses the app (open mode, signed in, or a login needed), the
//!   session token every call carries, its renewal; `session`: the plain
//!   logic of both (renewal timing, what a role may do), tested natively.
//! - `live`: server streams kept open across backend restarts, and the
//!   connection state the banner shows.
//! - `display`, `number`, `command`, `readings`, `range`, `chart`, `rules`,
//!   `route`: plain logic (formatting, numbers as text, command progress,
//!   latest values and paging, time ranges and buckets, chart geometry, rule
//!   drafts, paths), tested natively.
//! - `browser`: the clock, local time, history and localStorage; `tasks`:
//!   loops tied to a view.

mod api;
mod auth;
mod browser;
mod chart;
mod command;
mod display;
mod live;
mod number;
mod range;
mod readings;
mod route;
mod rules;
mod session;
mod tasks;
pub mod views;

pub use views::app::App;
