//! The demo home of the embedded run: a SenseHat sensor whose temperature
//! swings across 25 °C, a fan in AUTO with a rule "on above 25 °C, off below
//! 24.5 °C", and a light. The devices are simulated Pi agents
//! (`hearth_device::sim`) talking MQTT to the broker like real ones, so the
//! demo exercises every path a real home does.

use std::{sync::Arc, time::Duration};

use hearth_device::{
    mqtt::{run_actuator_with, Credentials, DeviceLink, LinkOptions},
    sensor::{run_sensor_with, SensorPlan},
    sim::{SimulatedOutput, SimulatedSensors, Waveform},
};
use hearth_proto::{topics::Topics, v1::Metric};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    core::Core,
    domain::{
        ActuatorState, Device, DeviceId, DeviceKind, Home, HomeId, Mode, RuleId, RuleState,
        StaleAction, ThresholdRule,
    },
    storage::StorageError,
};

pub const HOME: &str = "demo";
pub const SENSOR: &str = "demo-sensor";
pub const FAN: &str = "demo-fan";
pub const LIGHT: &str = "demo-light";
const RULE: &str = "demo-fan-above-25";

fn id<T>(parse: fn(&str, &'static str) -> Result<T, crate::domain::InvalidId>, s: &str) -> T {
    parse(s, "demo id").expect("demo ids are valid")
}

/// Creates the demo home, devices and rule where missing (so a restart keeps
/// their history and state).
pub async fn provision(core: &Core) -> anyhow::Result<()> {
    let home = id(HomeId::parse, HOME);
    let now = core.clock.now();
    ignore_conflict(
        core.storage
            .create_home(&Home {
                id: home.clone(),
                name: "Demo home".into(),
                created_at: now,
            })
            .await,
    )?;
    for (device, kind, name, mode) in [
        (
            SENSOR,
            DeviceKind::Sensor,
            "Living room SenseHat",
            Mode::Off,
        ),
        (FAN, DeviceKind::Fan, "Living room fan", Mode::Auto),
        (LIGHT, DeviceKind::Light, "Living room light", Mode::Off),
    ] {
        let device = Device {
            id: id(DeviceId::parse, device),
            home_id: home.clone(),
            kind,
            name: name.into(),
            state: ActuatorState {
                mode,
                ..ActuatorState::default()
            },
            online: false,
            last_seen: None,
            last_command: None,
        };
        ignore_conflict(core.storage.register_device(&device).await)?;
        core.directory.remember(&device);
    }
    let rule = ThresholdRule {
        id: id(RuleId::parse, RULE),
        home_id: home,
        name: "Fan on above 25 °C".into(),
        source: id(DeviceId::parse, SENSOR),
        metric: Metric::TemperatureCelsius,
        target: id(DeviceId::parse, FAN),
        on_above: 25.0,
        off_below: 24.5,
        enabled: true,
        min_on_s: 0,
        min_off_s: 0,
        sustain_s: 0,
        stale_after_s: 0,
        stale_action: StaleAction::Leave,
    };
    ignore_conflict(
        core.storage
            .create_rule(&rule, &RuleState::new(core.clock.now()))
            .await,
    )?;
    Ok(())
}

fn ignore_conflict(r: Result<(), StorageError>) -> Result<(), StorageError> {
    match r {
        Err(StorageError::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// A new MQTT credential for demo device `id`.
async fn login(core: &Core, id: &str) -> anyhow::Result<LinkOptions> {
    let device = core
        .storage
        .get_device(&self::id(DeviceId::parse, id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("demo device {id} is missing"))?;
    let secret = core.logins.issue(&device).await?;
    Ok(LinkOptions::default().with_credentials(Credentials::new(id, secret)))
}

/// Runs the demo home's simulated devices until `shutdown` (after [`provision`]).
pub async fn run(
    core: Arc<Core>,
    broker_url: String,
    topics: Topics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let link = |device: &str| DeviceLink {
        broker_url: broker_url.clone(),
        topics: topics.clone(),
        home_id: HOME.into(),
        device_id: device.into(),
    };
    // One swing of 22-27 °C every three minutes: the fan switches within a minute or two.
    let sensors = SimulatedSensors::new(
        core.clock.now(),
        Waveform::Sine {
            mean: 24.5,
            amplitude: 2.5,
            period_ms: 180_000,
        },
    );
    // Why a fresh credential each start: the demo devices log in like real
    // ones, and only their hashes survive a restart.
    let (sensor_login, fan_login, light_login) = (
        login(&core, SENSOR).await?,
        login(&core, FAN).await?,
        login(&core, LIGHT).await?,
    );
    let plan = SensorPlan::mqtt(Duration::from_secs(2));
    info!(
        home = HOME,
        "demo home running: {SENSOR}, {FAN} (AUTO above 25 °C), {LIGHT}"
    );
    let (sensor, fan, light) = tokio::join!(
        run_sensor_with(
            link(SENSOR),
            &sensor_login,
            sensors,
            &plan,
            shutdown.clone().cancelled_owned()
        ),
        run_actuator_with(
            link(FAN),
            &fan_login,
            SimulatedOutput::default(),
            shutdown.clone().cancelled_owned()
        ),
        run_actuator_with(
            link(LIGHT),
            &light_login,
            SimulatedOutput::default(),
            shutdown.cancelled_owned()
        ),
    );
    sensor.and(fan).and(light)
}
