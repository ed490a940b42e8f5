//! In-process tests of the backend: the real [`App`](hearth_backend::app::App)
//! on ports chosen at run time, a fresh SQLite file, the embedded broker and a
//! manual clock, all in the test's own process (see `helpers::spawn_app`).
//! For what needs a process boundary (signals, restarts, MariaDB, Mosquitto)
//! see the system tests in `tests/` at the workspace root.
//!
//! One test binary, one module per area, as in zero2prod.

mod access;
mod broker_logins;
mod commands;
mod delivery;
mod export;
mod helpers;
mod home_assistant;
mod limits;
mod service;
mod tls;
mod watch;
