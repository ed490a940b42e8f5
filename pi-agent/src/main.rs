//! `hearth-agent`: one device, configured from the environment.
//!
//! ```text
//! HEARTH_AGENT_MQTT_URL    mqtt://127.0.0.1:1884 (the embedded broker of `hearth`)
//! HEARTH_TOPIC_PREFIX      hearth
//! HEARTH_AGENT_HOME        home id (required)
//! HEARTH_AGENT_DEVICE      device id (required)
//! HEARTH_AGENT_ROLE        sensor | actuator
//! HEARTH_AGENT_INTERVAL_MS 2000 (sensor)
//! HEARTH_AGENT_TEMPERATURE steady:21 | ramp:20:30:120 | sine:25:3:120 (simulated sensor)
//! ```

use std::time::Duration;

use anyhow::{bail, Context as _};
use hearth_agent::{
    mqtt::{run_actuator, run_sensor, DeviceLink},
    sim::{SimulatedOutput, SimulatedSensors, Waveform},
    unix_ms_now,
};
use hearth_proto::topics::Topics;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(var("HEARTH_LOG").unwrap_or_else(|| "info".into())).init();
    let link = DeviceLink {
        broker_url: var("HEARTH_AGENT_MQTT_URL").unwrap_or_else(|| "mqtt://127.0.0.1:1884".into()),
        topics: Topics::new(&var("HEARTH_TOPIC_PREFIX").unwrap_or_else(|| "hearth".into())).context("HEARTH_TOPIC_PREFIX")?,
        home_id: var("HEARTH_AGENT_HOME").context("HEARTH_AGENT_HOME must name the device's home")?,
        device_id: var("HEARTH_AGENT_DEVICE").context("HEARTH_AGENT_DEVICE must name the device")?,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match var("HEARTH_AGENT_ROLE").as_deref().unwrap_or("sensor") {
        "sensor" => {
            let interval = var("HEARTH_AGENT_INTERVAL_MS").map_or(Ok(2000), |v| v.parse::<u64>()).context("HEARTH_AGENT_INTERVAL_MS")?;
            let temperature: Waveform = var("HEARTH_AGENT_TEMPERATURE")
                .unwrap_or_else(|| "sine:24:3:120".into())
                .parse()
                .map_err(|e| anyhow::anyhow!("HEARTH_AGENT_TEMPERATURE: {e}"))?;
            let sensors = SimulatedSensors::new(unix_ms_now(), temperature);
            run_sensor(link, sensors, Duration::from_millis(interval.max(1)), shutdown).await
        }
        "actuator" => run_actuator(link, SimulatedOutput::default(), shutdown).await,
        other => bail!("HEARTH_AGENT_ROLE={other:?}: must be sensor or actuator"),
    }
}
