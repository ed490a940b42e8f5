//! `hearth-gateway`: UDP on the LAN in, the backend's gRPC API out.
//!
//! ```text
//! HEARTH_GATEWAY_UDP    0.0.0.0:7878      where sensors send datagrams (port 0: any)
//! HEARTH_GATEWAY_CLOUD  http://127.0.0.1:8080   the hearth backend
//! HEARTH_LOG            info
//! ```

use anyhow::Context as _;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(var("HEARTH_LOG", "info")).with_ansi(ansi).init();
    let udp = var("HEARTH_GATEWAY_UDP", "0.0.0.0:7878");
    let udp = udp.parse().with_context(|| format!("HEARTH_GATEWAY_UDP={udp:?} is not an ip:port address"))?;
    hearth_gateway::run(udp, var("HEARTH_GATEWAY_CLOUD", "http://127.0.0.1:8080")).await
}
