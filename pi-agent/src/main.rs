//! `hearth-agent`: one device (or, for load tests, many simulated ones).
//! `hearth-agent --help` lists its settings (flags, `HEARTH_*` variables and
//! the keys of an optional TOML file; see `settings` and README.md).
//!
//! A setting that does not apply to the role and hardware is refused, as is
//! any bad value; the message names the setting and the process exits with
//! status 78 (EX_CONFIG), which the systemd unit does not restart on.
//! SIGTERM or Ctrl-C switch outputs off, publish offline and exit.

use hearth_agent::{
    app,
    settings::{Cli, Settings},
};
use tracing::error;

/// `EX_CONFIG` of sysexits.h: the configuration is wrong, so a restart will not help.
const EX_CONFIG: i32 = 78;

fn main() -> anyhow::Result<()> {
    let cli: Cli = hearth_runtime::settings::try_parse_from(std::env::args_os(), |name| {
        std::env::var(name).ok()
    })
    .unwrap_or_else(|e| {
        if !e.use_stderr() {
            e.exit() // --help, --version
        }
        let _ = e.print();
        std::process::exit(EX_CONFIG)
    });
    hearth_runtime::logging::init(&cli.log);
    let settings = Settings::from_cli(cli).unwrap_or_else(|e| {
        error!("{e}");
        std::process::exit(EX_CONFIG)
    });
    let runtime = app::runtime(&settings)?;
    runtime.block_on(app::run(settings, hearth_runtime::shutdown_signal()))
}
