//! Logging: `HEARTH_LOG` (tracing's filter syntax) selects what is printed.

use tracing_subscriber::EnvFilter;

/// The filter when `HEARTH_LOG` is unset: Hearth at info, chatty libraries quieter.
const DEFAULT_FILTER: &str = "info,rumqttd=warn,rumqttc=warn,sqlx=warn";

pub fn init() {
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
