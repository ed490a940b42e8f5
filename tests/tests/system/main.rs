//! System tests: the real `hearth` binary, on the embedded default and on
//! MariaDB + Mosquitto. See `hearth_tests` (tests/src/lib.rs) for the harness.

mod api;
mod automation;
mod broker_logins;
mod control;
mod delivery;
mod edge;
mod gateway;
mod image;
mod replicas;
mod resilience;
mod startup;
mod telemetry;
mod tls;
