//! `hearth-agent`: one device (or, for load tests, many simulated ones),
//! configured by an optional TOML file and environment variables; a variable
//! overrides the file's key. An empty variable counts as unset.
//!
//! ```text
//! variable                          file key            default / meaning
//! HEARTH_AGENT_CONFIG               —                   path of the TOML file (optional)
//! HEARTH_AGENT_MQTT_URL             mqtt_url            mqtt://127.0.0.1:1884 (the embedded broker of `hearth`)
//! HEARTH_AGENT_MQTT_USERNAME        mqtt_username       the device's broker user (unset: anonymous)
//! HEARTH_AGENT_MQTT_PASSWORD        mqtt_password       its password; needs the username
//! HEARTH_AGENT_MQTT_PASSWORD_FILE   mqtt_password_file  or a file holding it (line ends at its end ignored);
//!                                                       a password in the environment, in either form,
//!                                                       replaces the file's
//! HEARTH_TOPIC_PREFIX               topic_prefix        hearth
//! HEARTH_AGENT_HOME                 home                home id (required)
//! HEARTH_AGENT_DEVICE               device              device id (required)
//! HEARTH_AGENT_ROLE                 role                sensor | actuator (default sensor)
//! HEARTH_AGENT_HARDWARE             hardware            sensor: sim | sensehat; actuator: sim | gpio (default sim)
//! HEARTH_AGENT_GPIO_PIN             gpio_pin            BCM number 0–27 of the output pin (gpio; required there)
//! HEARTH_AGENT_INTERVAL_MS          interval_ms         2000: milliseconds between readings (sensor)
//! HEARTH_AGENT_TEMPERATURE          temperature         sine:24:3:120 (sim sensor): steady:V | ramp:FROM:TO:S |
//!                                                       sine:MEAN:AMPLITUDE:S | step:FROM:TO:AFTER_S |
//!                                                       noise:MEAN:AMPLITUDE; the first four may end in
//!                                                       +noise:AMPLITUDE (e.g. ramp:20:30:120+noise:0.2)
//! HEARTH_AGENT_SIM_SENSORS          sim_sensors         N simulated sensors {device}-0 … {device}-{N-1}, each
//!                                                       with its own connection, for load tests (sim sensor)
//! HEARTH_AGENT_TRANSPORT            transport           mqtt (sensor): how readings leave: mqtt | udp (datagrams
//!                                                       to a gateway; no broker, so no MQTT setting applies) |
//!                                                       mqtt+udp (both; the backend stores each batch once)
//! HEARTH_AGENT_GATEWAY_UDP          gateway_udp         host:port of hearth-gateway's UDP socket (udp, mqtt+udp)
//! HEARTH_AGENT_STATE_DIR            state_dir           unset (sensor): a writable directory where the sequence
//!                                                       number bound is kept ({device}.seq), so numbers keep
//!                                                       growing across restarts even when the clock went back
//! HEARTH_LOG                        —                   info: log filter (tracing syntax)
//! ```
//!
//! A setting that does not apply to the role and hardware is refused, as is
//! any bad value; the message names the setting and the process exits with
//! status 78 (EX_CONFIG), which the systemd unit does not restart on.
//! SIGTERM or Ctrl-C switch outputs off, publish offline and exit.

use hearth_agent::{app, settings::Settings};
use tracing::error;

/// `EX_CONFIG` of sysexits.h: the configuration is wrong, so a restart will not help.
const EX_CONFIG: i32 = 78;

fn main() -> anyhow::Result<()> {
    let filter = std::env::var("HEARTH_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "info".into());
    hearth_runtime::logging::init(&filter);
    let settings = Settings::from_env().unwrap_or_else(|e| {
        error!("{e}");
        std::process::exit(EX_CONFIG)
    });
    let runtime = app::runtime(&settings)?;
    runtime.block_on(app::run(settings, hearth_runtime::shutdown_signal()))
}
