//! Logging: one tracing subscriber, its filter from an environment variable
//! (tracing's syntax, e.g. `hearth_backend=debug`).

use tracing_subscriber::EnvFilter;

/// The filter when the variable is unset: Hearth at info, chatty libraries quieter.
pub const DEFAULT_FILTER: &str = "info,rumqttd=warn,rumqttc=warn,sqlx=warn";

/// Installs the subscriber; `filter` is the value of the log setting.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("log filter {filter:?} is not valid ({e}); using {DEFAULT_FILTER:?}");
        EnvFilter::new(DEFAULT_FILTER)
    });
    // Why: colour codes make piped logs (tests, kubectl logs) hard to read and grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .try_init();
}
