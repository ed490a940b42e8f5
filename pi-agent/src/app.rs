//! Starting the agent from its [`Settings`]: the hardware for its role, then
//! its loop until shutdown; or, with `sim_sensors = N`, N simulated sensors
//! from one process, each with its own connection (and socket), to load a
//! broker, a gateway and a backend as N devices would.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinSet};
use tracing::{info, warn};

use hearth_device::{
    mqtt::{run_actuator_with, DeviceLink, LinkOptions},
    sensor::{run_sensor_with, SensorPlan},
    sim::{SimulatedOutput, SimulatedSensors, Waveform},
};
use hearth_runtime::unix_ms_now;

use crate::settings::{ActuatorHardware, FleetLogins, Role, SensorHardware, Settings};

/// The runtime for `settings`: one thread for one device, one per core for a
/// fleet. Why: a worker thread per core costs a Pi agent megabytes of memory
/// for nothing, while a fleet of thousands of devices needs the cores.
pub fn runtime(settings: &Settings) -> std::io::Result<tokio::runtime::Runtime> {
    let fleet = matches!(
        settings.role,
        Role::Sensor {
            hardware: SensorHardware::Simulated { fleet: Some(_), .. },
            ..
        }
    );
    let mut builder = if fleet {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build()
}

/// Runs the agent `settings` describe until `shutdown`.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Settings {
        link,
        link_options,
        role,
    } = settings;
    if let Role::Sensor { plan, .. } = &role {
        if plan.udp_keys.is_some() && plan.state_dir.is_none() {
            // Why a warning, not an error: with a clock that is right (NTP,
            // or a clock battery) numbers from the clock alone keep growing.
            warn!("signing UDP datagrams without HEARTH_AGENT_STATE_DIR: if this device restarts with its clock behind, the gateway refuses its batches as replays (the systemd unit sets it)");
        }
    }
    match role {
        Role::Sensor {
            hardware:
                SensorHardware::Simulated {
                    temperature,
                    fleet: None,
                    ..
                },
            plan,
        } => {
            let sensors = SimulatedSensors::new(unix_ms_now(), temperature);
            run_sensor_with(link, &link_options, sensors, &plan, shutdown).await
        }
        Role::Sensor {
            hardware:
                SensorHardware::Simulated {
                    temperature,
                    fleet: Some(count),
                    logins,
                },
            plan,
        } => {
            run_fleet(
                Fleet {
                    base: link,
                    link_options,
                    logins,
                    temperature,
                    count,
                    plan,
                },
                shutdown,
            )
            .await
        }
        #[cfg(feature = "rpi")]
        Role::Sensor {
            hardware: SensorHardware::SenseHat,
            plan,
        } => {
            let sensors = crate::rpi::open_sensehat()?;
            run_sensor_with(link, &link_options, sensors, &plan, shutdown).await
        }
        Role::Actuator {
            hardware: ActuatorHardware::Simulated,
        } => run_actuator_with(link, &link_options, SimulatedOutput::default(), shutdown).await,
        #[cfg(feature = "rpi")]
        Role::Actuator {
            hardware: ActuatorHardware::Gpio { pin },
        } => {
            let output = crate::rpi::gpio_output(pin)?;
            run_actuator_with(link, &link_options, output, shutdown).await
        }
    }
}

/// Many simulated sensors with one configuration.
#[derive(Debug, Clone)]
struct Fleet {
    /// The link of every device, but for the device id, which is the base's
    /// followed by `-0`, `-1`, …
    base: DeviceLink,
    /// Every device's broker login, unless `logins` gives each its own.
    link_options: LinkOptions,
    logins: Option<Arc<FleetLogins>>,
    temperature: Waveform,
    count: u32,
    /// Every device's interval, transport and state directory.
    plan: SensorPlan,
}

impl Fleet {
    /// Each device's link and login, and how long after the others it
    /// starts.
    ///
    /// Why staggered: starts spread evenly over one interval spread the
    /// connections, and then the publishes, instead of all at once.
    fn devices(&self) -> impl Iterator<Item = (DeviceLink, LinkOptions, Duration)> + '_ {
        (0..self.count).map(|i| {
            let link = DeviceLink {
                device_id: format!("{}-{i}", self.base.device_id),
                ..self.base.clone()
            };
            // The settings checked that every device has its login.
            let login = self.logins.as_ref().and_then(|l| l.get(&link.device_id));
            let options = match login {
                Some(login) => LinkOptions::default().with_credentials(login.clone()),
                None => self.link_options.clone(),
            };
            let delay = self
                .plan
                .interval
                .mul_f64(f64::from(i) / f64::from(self.count));
            (link, options, delay)
        })
    }
}

/// Runs every device of `fleet` until `shutdown`, or until one fails; then
/// stops them all and returns the first failure.
async fn run_fleet(fleet: Fleet, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let started = unix_ms_now();
    let mut devices = JoinSet::new();
    for (i, (link, link_options, delay)) in fleet.devices().enumerate() {
        // Why: each device a second further into the script, so their readings differ.
        let sensors = SimulatedSensors::new(started - i as i64 * 1_000, fleet.temperature.clone());
        let plan = fleet.plan.clone();
        let mut stopped = stopped.clone();
        devices.spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            tokio::pin!(stop);
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            run_sensor_with(link, &link_options, sensors, &plan, stop).await
        });
    }
    info!(count = fleet.count, first = %format!("{}-0", fleet.base.device_id), "simulated sensors starting");
    tokio::pin!(shutdown);
    let mut failure = None;
    while failure.is_none() {
        tokio::select! {
            () = &mut shutdown => break,
            joined = devices.join_next() => match joined {
                Some(outcome) => failure = outcome.map_err(anyhow::Error::from).and_then(|r| r).err(),
                None => break,
            },
        }
    }
    let _ = stop.send(true);
    while let Some(outcome) = devices.join_next().await {
        if let Err(e) = outcome.map_err(anyhow::Error::from).and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use hearth_proto::topics::Topics;

    use super::*;

    fn fleet(broker_url: String, count: u32) -> Fleet {
        Fleet {
            base: DeviceLink {
                broker_url,
                topics: Topics::default(),
                home_id: "h".into(),
                device_id: "load".into(),
            },
            link_options: LinkOptions::default(),
            logins: None,
            temperature: Waveform::Steady(21.0),
            count,
            plan: SensorPlan::mqtt(Duration::from_millis(1_000)),
        }
    }

    #[test]
    fn a_fleet_numbers_its_devices_and_spreads_their_starts_over_one_interval() {
        let fleet = fleet("mqtt://127.0.0.1:1883".into(), 4);
        let devices: Vec<(String, u128)> = fleet
            .devices()
            .map(|(link, _, delay)| (link.device_id, delay.as_millis()))
            .collect();
        assert_eq!(
            devices,
            [
                ("load-0".into(), 0),
                ("load-1".into(), 250),
                ("load-2".into(), 500),
                ("load-3".into(), 750)
            ]
        );
    }

    #[test]
    fn with_logins_each_device_logs_in_as_itself() {
        use hearth_runtime::mqtt::Credentials;
        let mut fleet = fleet("mqtt://127.0.0.1:1883".into(), 2);
        fleet.link_options = LinkOptions::default().with_credentials(Credentials::new("all", "p"));
        let logins = ["load-0", "load-1"].map(|d| (d.to_owned(), Credentials::new(d, d.repeat(2))));
        let shared: Vec<_> = fleet.devices().map(|(_, o, _)| o).collect();
        assert!(shared
            .iter()
            .all(|o| o.credentials().unwrap().username() == "all"));
        fleet.logins = Some(Arc::new(logins.clone().into_iter().collect()));
        let own: Vec<_> = fleet
            .devices()
            .map(|(_, o, _)| o.credentials().cloned().unwrap())
            .collect();
        assert_eq!(own, logins.map(|(_, c)| c));
    }

    #[tokio::test]
    async fn a_fleet_stops_every_device_on_shutdown_even_while_they_connect() {
        // A listener that never accepts: connections hang in its backlog, as with an overloaded broker.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fleet = fleet(format!("mqtt://{}", listener.local_addr().unwrap()), 20);
        let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run_fleet(fleet, async {
            let _ = triggered.await;
        }));
        tokio::task::yield_now().await;
        trigger.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the fleet stops within 5 s");
        outcome.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_fleet_fails_as_soon_as_a_device_cannot_start() {
        let mut fleet = fleet("mqtt://127.0.0.1:1883".into(), 3);
        // An id the settings would refuse: every device fails as it builds its topics.
        fleet.base.home_id = "bad/home".into();
        let error = tokio::time::timeout(
            Duration::from_secs(5),
            run_fleet(fleet, std::future::pending()),
        )
        .await
        .expect("a failed fleet returns")
        .unwrap_err();
        assert!(format!("{error:#}").contains("device topic"), "{error:#}");
    }
}
