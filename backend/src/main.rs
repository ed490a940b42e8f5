//! `hearth`: the backend binary. `hearth --help` lists its settings;
//! `hearth admin --help` the administration commands.

use hearth_backend::{admin, app::App, settings::Cli};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("admin") {
        return admin::run(args.skip(1)).await;
    }
    let cli: Cli = hearth_runtime::settings::parse();
    hearth_runtime::logging::init(&cli.log);
    let app = App::build(cli.into()).await?;
    app.run_until(hearth_runtime::shutdown_signal()).await
}
