//! `hearth`: the backend binary. `hearth --help` lists its settings.

use hearth_backend::{app::App, settings::Cli};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = hearth_runtime::settings::parse();
    hearth_runtime::logging::init(&cli.log);
    let app = App::build(cli.into()).await?;
    app.run_until(hearth_runtime::shutdown_signal()).await
}
