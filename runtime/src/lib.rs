//! What every Hearth binary (`hearth`, `hearth-gateway`, `hearth-agent`)
//! runs on, written once:
//!
//! - [`clock`]: the one source of "now" ([`Clock`]), which tests replace.
//! - [`shutdown`]: Ctrl-C or SIGTERM as a future.
//! - [`settings`]: flags and `HEARTH_*` environment variables through clap,
//!   `<NAME>_FILE` for secrets, errors that name the setting.
//! - [`mqtt`]: MQTT client options (keep-alive, packet limits, credentials)
//!   and clients with Nagle's algorithm off.
//! - [`tls`]: rustls servers whose certificate files are reloaded when they
//!   change, and clients trusting a CA file or the system's CAs.
//! - [`retry`]: the one backoff policy, doubling with jitter.
//! - [`secret`]: URLs without their passwords, for logs.
//! - [`logging`]: the tracing subscriber and its filter variable.
//! - [`metrics`]: Prometheus metrics through `prometheus-client`, and (feature
//!   `http`) the `/metrics` route for the binary's axum router.

pub mod clock;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod shutdown;
#[cfg(any(test, feature = "test-ca"))]
pub mod test_ca;
pub mod tls;

pub use clock::{unix_ms_now, Clock};
pub use retry::Backoff;
pub use secret::{redact, Secret};
pub use shutdown::shutdown_signal;
