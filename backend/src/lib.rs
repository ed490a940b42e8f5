//! The Hearth backend (`hearth`).
//!
//! Map of the crate, following a reading and a command:
//!
//! - [`settings`]: flags and `HEARTH_*` environment variables, typed (`hearth --help`).
//! - [`app`]: start-up ([`app::App::build`]) and the run loop with graceful
//!   shutdown; serves gRPC, gRPC-web, reflection, health, `/metrics` and the
//!   web app on one port ([`web`]: the built app, precompressed, with cache
//!   headers); [`listener`]: its connections, TLS when configured.
//! - [`core`]: [`core::Core`], the state the services share.
//! - [`mqtt`]: the embedded broker and the guard in front of it, the broker
//!   connection, topic routing, Mosquitto's dynamic security.
//! - [`credentials`]: devices' MQTT credentials, and checking broker logins.
//! - [`intake`]: what devices publish → validated readings for [`ingest`],
//!   reports and status for [`control`].
//! - [`ingest`]: bounded queue → batched inserts → acknowledgements and the
//!   live stream of stored readings.
//! - [`automation`]: stored readings → threshold rules → [`control`].
//! - [`control`]: mode and desired state (compare-and-set on the version),
//!   publishing, acknowledgements.
//! - [`grpc`]: the three hearth.v1 services, conversions and statuses.
//! - [`storage`]: the `Storage` trait, SQLite and MySQL, all the SQL.
//! - [`domain`] (the `hearth-domain` crate, `backend/domain/`): ids, the
//!   device state machine, reading decoding and validation, rules; pure
//!   logic, no I/O.
//! - [`demo`]: the simulated demo home of the embedded run.

pub mod access;
pub mod admin;
pub mod app;
pub mod automation;
pub mod control;
pub mod core;
pub mod credentials;
pub mod delivery;
pub mod demo;
pub mod directory;
pub mod grpc;
pub mod ingest;
pub mod intake;
pub mod lease;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod mqtt;
pub mod rollup;
pub mod settings;
pub mod storage;
pub mod web;

pub use hearth_domain as domain;
