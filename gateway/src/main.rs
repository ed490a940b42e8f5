//! `hearth-gateway`: UDP on the LAN in, the backend's gRPC API out.
//! `hearth-gateway --help` lists its settings (`settings`, and README.md's
//! "The gateway"). SIGTERM or Ctrl-C: stop taking datagrams, fsync the
//! queue, exit 0.

use hearth_gateway::settings::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = hearth_runtime::settings::parse();
    hearth_runtime::logging::init(&cli.log);
    hearth_gateway::run(cli.into(), hearth_runtime::shutdown_signal()).await
}
