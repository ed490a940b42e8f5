//! Logging: `HEARTH_LOG` (tracing's filter syntax) selects what is printed.

use tracing_subscriber::EnvFilter;

/// The filter when `HEARTH_LOG` is unset: Hearth at info, chatty libraries quieter.
const DEFAULT_FILTER: &str = "info,rumqttd=warn,rumqttc=warn,sqlx=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Why: colour codes make piped logs (tests, kubectl logs) hard to read and grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
}
