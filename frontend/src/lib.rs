//! Hearth's web app: Leptos, rendered in the browser, talking gRPC-web to the
//! backend that serves it.
//!
//! - [`views`]: the components, one file per part of the page; `App` is the root.
//! - `api`: every network call, through the generated `hearth.v1` clients.
//! - `live`: the reconnecting stream of a home's readings.
//! - `display`, `command`, `readings`: plain logic (formatting, command
//!   acknowledgement, latest values and history paging), tested natively.
//! - `browser`: the clock and localStorage; `tasks`: loops tied to a view.

mod api;
mod browser;
mod command;
mod display;
mod live;
mod readings;
mod tasks;
pub mod views;

pub use views::app::App;
