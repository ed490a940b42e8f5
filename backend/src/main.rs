//! `hearth`: the backend binary. See README.md for its settings.

use hearth_backend::{app::App, settings::Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::from_env()?;
    let app = App::build(settings).await?;
    app.run_until(hearth_backend::app::shutdown_signal()).await
}
