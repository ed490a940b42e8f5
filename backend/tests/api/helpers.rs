//! `spawn_app()` and what tests do with the app it starts.

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Once},
    time::Duration,
};

use hearth_backend::{app::App, settings::Settings};
use hearth_proto::{
    topics::{Channel, Topics},
    v1::{
        device_service_client::DeviceServiceClient,
        telemetry_service_client::TelemetryServiceClient, CreateHomeRequest, DesiredState,
        DeviceKind, DeviceStatus, Metric, RegisterDeviceRequest, ReportedState,
    },
};
use hearth_runtime::{test_ca::TlsFiles, Clock};
use prost::Message as _;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;

/// How long any wait for an event lasts before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The home every test app starts with, and its devices.
pub const HOME: &str = "home";
pub const FAN: &str = "fan";
pub const SENSOR: &str = "sensor";

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`: gRPC, gRPC-web and the web app.
    pub url: String,
    pub mqtt_url: String,
    pub topics: Topics,
    /// Every part of the app reads "now" from this; it moves only when told.
    pub clock: Clock,
    pub command_ttl_ms: i64,
    /// Where it stores: another app given this URL shares its database, as
    /// a second replica would.
    pub database_url: String,
    /// The CA the app's certificate is from, when it serves TLS
    /// ([`spawn_app_with_tls`]); its clients trust it.
    pub ca_file: Option<PathBuf>,
    stop: CancellationToken,
    running: Option<JoinHandle<anyhow::Result<()>>>,
    /// What it was started with, for [`TestApp::restart`].
    extra: Vec<(&'static str, String)>,
    dir: Arc<tempfile::TempDir>,
}

/// Starts the app: listeners on port 0, a new SQLite file, its own topic
/// prefix, no demo home, a manual clock at the current time. Logs go to the
/// test output only with `TEST_LOG` set (its value is the filter).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// [`spawn_app`] with more settings (`HEARTH_*` name, value), e.g. a first
/// admin.
pub async fn spawn_app_with(extra: &[(&'static str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let extra = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
    spawn_in(Arc::new(dir), extra).await
}

/// The app with its SQLite file (unless `extra` names another database) in
/// `dir`.
async fn spawn_in(dir: Arc<tempfile::TempDir>, extra: Vec<(&'static str, String)>) -> TestApp {
    static LOGGING: Once = Once::new();
    LOGGING.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            hearth_runtime::logging::init(&filter);
        }
    });
    let prefix = format!("test-{:016x}/hearth", rand::random::<u64>());
    let mut vars = HashMap::from([
        ("HEARTH_LISTEN", "127.0.0.1:0".to_owned()),
        ("HEARTH_MQTT_LISTEN", "127.0.0.1:0".to_owned()),
        (
            "HEARTH_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("hearth.db").display()),
        ),
        ("HEARTH_DEMO", "false".to_owned()),
        ("HEARTH_TOPIC_PREFIX", prefix),
    ]);
    vars.extend(extra.iter().cloned());
    let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid settings");
    let topics = settings.topics.clone();
    let command_ttl_ms = settings.command_ttl_ms;
    let database_url = vars["HEARTH_DATABASE_URL"].clone();
    let clock = Clock::manual(hearth_runtime::clock::unix_ms_now());
    let app = App::build_with_clock(settings, clock.clone())
        .await
        .expect("the app starts");
    let url = format!("http://{}", app.http_addr());
    let mqtt_url = app.mqtt_url().to_owned();
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    TestApp {
        url,
        mqtt_url,
        topics,
        clock,
        command_ttl_ms,
        database_url,
        ca_file: None,
        stop,
        running: Some(running),
        extra,
        dir,
    }
}

/// [`spawn_app_with`] serving TLS with `files`'s certificate on both
/// listeners; the test's gRPC and MQTT clients trust `files.ca`.
pub async fn spawn_app_with_tls(files: &TlsFiles) -> TestApp {
    let (cert, key) = (files.cert.display(), files.key.display());
    let mut app = spawn_app_with(&[
        ("HEARTH_TLS_CERT_FILE", &cert.to_string()),
        ("HEARTH_TLS_KEY_FILE", &key.to_string()),
    ])
    .await;
    app.url = app.url.replacen("http://", "https://", 1);
    app.mqtt_url = format!("{}?ca_file={}", app.mqtt_url, files.ca.display());
    app.ca_file = Some(files.ca.clone());
    app
}

/// A gRPC channel to `addr` over TLS, as `localhost`, trusting only
/// `ca_file`; it connects at its first call.
pub fn tls_channel(addr: &str, ca_file: &Path) -> GrpcChannel {
    let port = addr.rsplit(':').next().expect("host:port");
    hearth_runtime::tls::grpc_channel(&format!("https://localhost:{port}"), Some(ca_file))
        .expect("a TLS channel")
}

impl TestApp {
    /// `host:port` of gRPC, gRPC-web and the web app.
    pub fn addr(&self) -> &str {
        self.url.split_once("://").map_or(&self.url, |(_, a)| a)
    }

    /// A gRPC channel to the app, over TLS when it serves TLS.
    pub async fn channel(&self) -> GrpcChannel {
        match &self.ca_file {
            Some(ca) => tls_channel(self.addr(), ca),
            None => GrpcChannel::from_shared(self.url.clone())
                .expect("an endpoint")
                .connect()
                .await
                .expect("the gRPC port answers"),
        }
    }

    /// The text of `/metrics`, over a plain HTTP/1.1 GET.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.url.trim_start_matches("http://").to_owned();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        body
    }

    pub async fn auth(
        &self,
    ) -> hearth_proto::v1::auth_service_client::AuthServiceClient<GrpcChannel> {
        hearth_proto::v1::auth_service_client::AuthServiceClient::new(self.channel().await)
    }

    pub async fn devices(&self) -> DeviceServiceClient<GrpcChannel> {
        DeviceServiceClient::new(self.channel().await)
    }

    /// Creates `HOME` with the fan `FAN`, through the API.
    pub async fn home_with_a_fan(&self) {
        let mut devices = self.devices().await;
        devices
            .create_home(CreateHomeRequest {
                id: HOME.into(),
                name: "Test home".into(),
            })
            .await
            .unwrap();
        devices
            .register_device(RegisterDeviceRequest {
                home_id: HOME.into(),
                id: FAN.into(),
                kind: DeviceKind::Fan as i32,
                name: "Fan".into(),
            })
            .await
            .unwrap();
    }

    pub async fn telemetry(&self) -> TelemetryServiceClient<GrpcChannel> {
        TelemetryServiceClient::new(self.channel().await)
    }

    /// Registers the sensor `SENSOR` named `name` in `HOME`, through the API.
    pub async fn add_sensor(&self, name: &str) {
        self.devices()
            .await
            .register_device(RegisterDeviceRequest {
                home_id: HOME.into(),
                id: SENSOR.into(),
                kind: DeviceKind::Sensor as i32,
                name: name.into(),
            })
            .await
            .unwrap();
    }

    /// Stops the app as [`TestApp::stop`] does and starts it again with the
    /// same settings and database (a new topic prefix; the clock where it
    /// was): what it still knows is what it stored.
    pub async fn restart(self) -> TestApp {
        let (dir, extra, now) = (self.dir.clone(), self.extra.clone(), self.clock.now());
        self.stop().await;
        let app = spawn_in(dir, extra).await;
        app.clock.set(now);
        app
    }

    /// Shuts the app down as SIGTERM would, and checks it stopped cleanly.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let running = self.running.take().expect("stopped once");
        tokio::time::timeout(PATIENCE, running)
            .await
            .expect("the app stops within the patience")
            .expect("the app's task did not panic")
            .expect("the app stopped without an error");
    }
}

impl Drop for TestApp {
    /// A test that failed before `stop` still ends the app's tasks.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What `check` finds once it finds something, polled until then (at most
/// `PATIENCE`).
pub async fn eventually<T, F, C>(what: &str, check: C) -> T
where
    C: Fn() -> F,
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A simulated actuator on the app's broker, as a Pi agent would be: it
/// hears its desired states and can report and announce itself.
pub struct SimDevice {
    client: AsyncClient,
    topics: Topics,
    desired: mpsc::Receiver<DesiredState>,
    _events: JoinHandle<()>,
}

impl SimDevice {
    /// Connects as `device` of `HOME` and waits until it is subscribed to
    /// its desired state.
    pub async fn connect(app: &TestApp, device: &str) -> Self {
        Self::connect_with(app, device, None).await
    }

    /// [`SimDevice::connect`] with the device's own broker login, if given.
    pub async fn connect_with(
        app: &TestApp,
        device: &str,
        login: Option<&hearth_proto::v1::MqttCredential>,
    ) -> Self {
        let client_id = match login {
            Some(login) => login.client_id.clone(),
            None => format!("{device}-{:08x}", rand::random::<u32>()),
        };
        let mut options = hearth_runtime::mqtt::options(&app.mqtt_url, &client_id, None).unwrap();
        if let Some(login) = login {
            options.set_credentials(login.username.as_str(), login.password.as_str());
        }
        let (client, mut events) = hearth_runtime::mqtt::client(options, 64);
        let topic = app.topics.device(HOME, device, Channel::Desired).unwrap();
        client
            .subscribe(topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (desired_tx, desired) = mpsc::channel(16);
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let events = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                        let state = DesiredState::decode(p.payload.as_ref()).unwrap();
                        if desired_tx.send(state).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(PATIENCE, subscribed)
            .await
            .expect("the broker acknowledges the subscription")
            .unwrap();
        Self {
            client,
            topics: app.topics.clone(),
            desired,
            _events: events,
        }
    }

    async fn publish(&self, device: &str, channel: Channel, payload: Vec<u8>) {
        let topic = self.topics.device(HOME, device, channel).unwrap();
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub async fn online(&self, device: &str) {
        let status = DeviceStatus {
            online: true,
            ..DeviceStatus::default()
        };
        self.publish(device, Channel::Status, status.encode_to_vec())
            .await;
    }

    /// Says, as a sensor's status does, that `device` sent up to
    /// `last_seq` in its run from `run_start`, each batch of `metrics`.
    pub async fn says_sent(&self, device: &str, run_start: u64, last_seq: u64, metrics: &[Metric]) {
        let status = DeviceStatus {
            online: false,
            run_start,
            last_seq,
            metrics: metrics.iter().map(|&m| m as i32).collect(),
            ..DeviceStatus::default()
        };
        self.publish(device, Channel::Status, status.encode_to_vec())
            .await;
    }

    /// Reports `desired` applied.
    pub async fn apply(&self, device: &str, desired: &DesiredState) {
        let reported = ReportedState {
            applied_version: desired.version,
            on: desired.on,
            ..ReportedState::default()
        };
        self.publish(device, Channel::Reported, reported.encode_to_vec())
            .await;
    }

    /// The next desired state the backend sends this device.
    pub async fn next_desired(&mut self) -> DesiredState {
        tokio::time::timeout(PATIENCE, self.desired.recv())
            .await
            .expect("a desired state within the patience")
            .expect("the device's connection is up")
    }
}
