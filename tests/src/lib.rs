//! Harness for Hearth's system tests: starts the real `hearth` binary on
//! ports chosen at run time, against either
//!
//! - [`Backend::Embedded`]: a fresh SQLite file and the in-process broker, or
//! - [`Backend::External`]: a fresh MariaDB database and Mosquitto, each
//!   test under its own topic prefix (`HEARTH_TEST_MYSQL_URL`, default
//!   `mysql://root@127.0.0.1:3306`; `HEARTH_TEST_MQTT_URL`, default
//!   `mqtt://127.0.0.1:1883`),
//!
//! and gives tests gRPC clients and MQTT connections as a device.
//! [`browser`] drives headless Chromium for the browser tests and bench-web.

pub mod browser;

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, Once},
    time::Duration,
};

use hearth_proto::{
    topics::{Channel, Topics},
    v1::{
        automation_service_client::AutomationServiceClient,
        device_service_client::DeviceServiceClient,
        telemetry_service_client::TelemetryServiceClient, CreateHomeRequest, DeliveryFigures,
        DeviceKind, GetDeliveryRequest, GetDeviceRequest, RegisterDeviceRequest,
    },
};
use hearth_runtime::test_ca::TlsFiles;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tonic::transport::Channel as GrpcChannel;

/// Which configuration a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    External,
}

pub fn mysql_url() -> String {
    std::env::var("HEARTH_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn external_mqtt_url() -> String {
    std::env::var("HEARTH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

/// A short random suffix for names that must not collide across tests.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// The `hearth` binary, built once per test run; `HEARTH_BENCH_BINARY` names
/// another build instead (a benchmark comparing two commits).
pub fn hearth_binary() -> PathBuf {
    match std::env::var_os("HEARTH_BENCH_BINARY") {
        Some(path) => PathBuf::from(path),
        None => binary("hearth-backend", "hearth"),
    }
}

/// The repository's root directory.
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Where a release build of binary `name` is (for the benchmarks).
pub fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_dir().join("target"), PathBuf::from);
    target.join("release").join(name)
}

/// `cargo build --release --quiet` with `args` (which packages and
/// binaries), for a benchmark that runs release binaries.
pub fn build_release(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("building release binaries…");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--quiet"])
            .args(args)
            .current_dir(workspace_dir())
            .status()?;
    anyhow::ensure!(status.success(), "cargo build --release failed");
    Ok(())
}

/// The path of `bin` (of `package`), after building every binary of the
/// workspace once per test run (a no-op when up to date).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let workspace = workspace_dir();
    BUILD.call_once(|| {
        // Why the whole workspace: a subset would unify features differently
        // and rebuild what `./hearth.sh test` just built. It sets
        // HEARTH_BINARIES_BUILT so the test processes skip even the check.
        if std::env::var_os("HEARTH_BINARIES_BUILT").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for args in [
            &["--workspace", "--bins"][..],
            &["-p", "hearth-mosquitto-plugin"],
        ] {
            let status = Command::new(&cargo)
                .args(["build", "--quiet"])
                .args(args)
                .current_dir(&workspace)
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building {args:?} failed");
        }
    });
    let _ = package;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    target.join("debug").join(bin)
}

/// A running `hearth` process; killed (and its database dropped) on drop.
pub struct TestApp {
    child: Child,
    pub backend: Backend,
    pub http: SocketAddr,
    pub mqtt_url: String,
    pub topics: Topics,
    /// The CA of the certificate it serves, when it serves TLS
    /// ([`TestApp::spawn_with_tls`]); the test's clients trust it.
    pub ca_file: Option<PathBuf>,
    logs: Arc<Mutex<Vec<String>>>,
    database: Option<String>,
    /// How it was started, for [`TestApp::restart`].
    command: Vec<(String, String)>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("hearth-test"));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        Self(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates a fresh MariaDB database and returns (its name, its URL).
pub async fn fresh_mysql_database() -> (String, String) {
    use sqlx::Connection as _;
    let name = unique("hearth_test").replace('-', "_");
    let mut conn = sqlx::MySqlConnection::connect(&mysql_url())
        .await
        .expect("MariaDB is reachable at HEARTH_TEST_MYSQL_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    (name.clone(), format!("{}/{name}", mysql_url()))
}

impl TestApp {
    /// Starts `hearth` on `backend` with the demo off.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[("HEARTH_DEMO", "false")]).await
    }

    /// Starts `hearth` on `backend` with extra environment variables.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let prefix = unique("t");
        let mut command = Command::new(hearth_binary());
        command
            .current_dir(&dir.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTH_LOG", "info,rumqttd=warn,rumqttc=warn,sqlx=warn")
            .env("HEARTH_LISTEN", "127.0.0.1:0")
            .env("HEARTH_TOPIC_PREFIX", format!("{prefix}/hearth"));
        let database = match backend {
            Backend::Embedded => {
                command
                    .env(
                        "HEARTH_DATABASE_URL",
                        format!("sqlite://{}/hearth.db", dir.0.display()),
                    )
                    .env("HEARTH_MQTT_LISTEN", "127.0.0.1:0");
                None
            }
            Backend::External => {
                let (name, url) = fresh_mysql_database().await;
                command
                    .env("HEARTH_DATABASE_URL", url)
                    .env("HEARTH_MQTT_URL", external_mqtt_url());
                Some(name)
            }
        };
        for (k, v) in extra {
            command.env(k, v);
        }
        let env: Vec<(String, String)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        let (child, logs, line) = spawn_until_ready(command, "hearth ready").await;
        let http: SocketAddr = log_field(&line, "http")
            .parse()
            .expect("http= is an address");
        let mqtt_url = log_field(&line, "mqtt");
        let topics = Topics::new(&format!("{prefix}/hearth")).expect("valid prefix");
        TestApp {
            child,
            backend,
            http,
            mqtt_url,
            topics,
            ca_file: None,
            logs,
            database,
            command: env,
            _dir: dir,
        }
    }

    /// Starts `hearth` on the embedded default serving TLS with `files`'s
    /// certificate on both listeners; the test's clients trust `files.ca`.
    pub async fn spawn_with_tls(files: &TlsFiles, extra: &[(&str, &str)]) -> Self {
        let (cert, key) = (
            files.cert.display().to_string(),
            files.key.display().to_string(),
        );
        let mut env = vec![
            ("HEARTH_TLS_CERT_FILE", cert.as_str()),
            ("HEARTH_TLS_KEY_FILE", key.as_str()),
        ];
        env.extend_from_slice(extra);
        let mut app = Self::spawn_with(Backend::Embedded, &env).await;
        app.mqtt_url = format!("{}?ca_file={}", app.mqtt_url, files.ca.display());
        app.ca_file = Some(files.ca.clone());
        app
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` (the name its
    /// certificate has) when it serves TLS.
    pub fn grpc_url(&self) -> String {
        match self.ca_file {
            Some(_) => format!("https://localhost:{}", self.http.port()),
            None => format!("http://{}", self.http),
        }
    }

    async fn channel(&self) -> GrpcChannel {
        hearth_runtime::tls::grpc_channel(&self.grpc_url(), self.ca_file.as_deref())
            .expect("a gRPC channel")
    }

    pub async fn devices(&self) -> DeviceServiceClient<GrpcChannel> {
        DeviceServiceClient::new(self.channel().await)
    }

    /// The newest 50 commands of `device`, newest first (`ListCommands`).
    pub async fn commands(&self, device: &str) -> Vec<hearth_proto::v1::Command> {
        self.devices()
            .await
            .list_commands(hearth_proto::v1::ListCommandsRequest {
                device_id: device.into(),
                limit: 50,
            })
            .await
            .expect("ListCommands")
            .into_inner()
            .commands
    }

    pub async fn telemetry(&self) -> TelemetryServiceClient<GrpcChannel> {
        TelemetryServiceClient::new(self.channel().await)
    }

    pub async fn auth(
        &self,
    ) -> hearth_proto::v1::auth_service_client::AuthServiceClient<GrpcChannel> {
        hearth_proto::v1::auth_service_client::AuthServiceClient::new(self.channel().await)
    }

    pub async fn automation(&self) -> AutomationServiceClient<GrpcChannel> {
        AutomationServiceClient::new(self.channel().await)
    }

    /// Everything `hearth` has printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Creates a home and registers devices in it; returns the home id.
    pub async fn home_with(&self, devices: &[(&str, DeviceKind)]) -> String {
        let home = unique("home");
        let mut api = self.devices().await;
        api.create_home(CreateHomeRequest {
            id: home.clone(),
            name: "Test home".into(),
        })
        .await
        .expect("CreateHome");
        for (id, kind) in devices {
            api.register_device(RegisterDeviceRequest {
                home_id: home.clone(),
                id: id.to_string(),
                kind: *kind as i32,
                name: String::new(),
            })
            .await
            .expect("RegisterDevice");
        }
        home
    }

    /// An MQTT connection as device `device`, already connected.
    pub async fn connect_as_device(&self, device: &str) -> DeviceConnection {
        let options = hearth_runtime::mqtt::options(&self.mqtt_url, &unique(device), None)
            .expect("mqtt options");
        DeviceConnection::connect(options).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await
    }

    /// Every stored reading of `device` (all metrics), oldest first, through
    /// `ListReadings` page by page.
    pub async fn stored_readings(&self, device: &str) -> Vec<hearth_proto::v1::StoredReading> {
        let mut api = self.telemetry().await;
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = api
                .list_readings(hearth_proto::v1::ListReadingsRequest {
                    device_id: device.into(),
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("ListReadings")
                .into_inner();
            out.extend(page.readings);
            if page.next_page_token.is_empty() {
                out.reverse();
                return out;
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits until `check` holds for the device, polling GetDevice; panics with
    /// the last state after `timeout`.
    pub async fn wait_for_device(
        &self,
        id: &str,
        timeout: Duration,
        check: impl Fn(&hearth_proto::v1::Device) -> bool,
    ) -> hearth_proto::v1::Device {
        let mut api = self.devices().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let device = api
                .get_device(GetDeviceRequest { id: id.into() })
                .await
                .expect("GetDevice")
                .into_inner();
            if check(&device) {
                return device;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("device {id} did not reach the expected state; last: {device:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops `hearth` with SIGTERM and starts it again on the same ports,
    /// database and broker.
    pub async fn restart(&mut self) {
        assert!(
            self.terminate().success(),
            "hearth exited badly:\n{}",
            self.logs()
        );
        let mut command = Command::new(hearth_binary());
        command
            .current_dir(&self._dir.0)
            .env_clear()
            .envs(self.command.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.env("HEARTH_LISTEN", self.http.to_string());
        if self.backend == Backend::Embedded {
            command.env(
                "HEARTH_MQTT_LISTEN",
                self.mqtt_url.trim_start_matches("mqtt://"),
            );
        }
        let (child, logs, _) = spawn_until_ready(command, "hearth ready").await;
        self.child = child;
        self.logs = logs;
    }

    /// Stops the process where it stands (SIGSTOP): it holds its
    /// connections but reads and acknowledges nothing, as a stalled replica.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} hearth");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for hearth")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Why: a failed test's own message rarely says what hearth was doing;
        // its log does, and it is gone once the process is.
        if std::thread::panicking() {
            let logs = self.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            eprintln!("---- hearth output ----\n{logs}\n---- end of hearth output ----");
        }
        if let Some(name) = self.database.take() {
            // Why a thread: Drop cannot await, and the test's runtime may be gone.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection as _;
                    if let Ok(mut conn) = sqlx::MySqlConnection::connect(&mysql_url()).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Starts `command` with its output captured, and waits for a line
/// containing `marker`. Panics with the output if it exits or takes a minute.
pub async fn spawn_until_ready(
    mut command: Command,
    marker: &'static str,
) -> (Child, Arc<Mutex<Vec<String>>>, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the process");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let logs = logs.clone();
        let ready_tx = ready_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("HEARTH_TEST_LOG").is_some() {
                    eprintln!("[{marker}] {line}");
                }
                let ready = line.contains(marker).then(|| line.clone());
                // Why before telling: a test that reads the logs once ready
                // must find the ready line in them.
                logs.lock().expect("logs").push(line);
                if let Some(line) = ready {
                    let _ = ready_tx.send(line);
                }
            }
        });
    }
    drop(ready_tx);
    let line = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("waiting for the process");
    match line {
        Ok(line) => (child, logs, line),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "no {marker:?} line; the output:\n{}",
                logs.lock().expect("logs").join("\n")
            );
        }
    }
}

/// The value of `name=` in a log line.
pub fn log_field(line: &str, name: &str) -> String {
    let start = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        + name.len()
        + 1;
    line[start..]
        .split_whitespace()
        .next()
        .expect("a value")
        .trim_matches('"')
        .to_owned()
}

/// A running `hearth-gateway`, killed on drop.
pub struct TestGateway {
    child: Child,
    pub udp: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestGateway {
    /// Starts a gateway on a free UDP port forwarding to `app`, queueing in `data`.
    pub async fn spawn(app: &TestApp, data: &TempDir) -> Self {
        Self::spawn_to(&app.grpc_url(), data, "127.0.0.1:0").await
    }

    /// Starts a gateway on `udp` forwarding to `cloud`, queueing in `data`;
    /// it logs its stats every 100 ms.
    pub async fn spawn_to(cloud: &str, data: &TempDir, udp: &str) -> Self {
        Self::spawn_with(cloud, data, udp, &[]).await
    }

    /// Like [`spawn_to`](Self::spawn_to), with extra environment variables.
    pub async fn spawn_with(
        cloud: &str,
        data: &TempDir,
        udp: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(binary("hearth-gateway", "hearth-gateway"));
        command.envs(extra.iter().copied());
        command
            .env("HEARTH_GATEWAY_UDP", udp)
            .env("HEARTH_GATEWAY_CLOUD", cloud)
            .env("HEARTH_GATEWAY_DATA", &data.0)
            .env("HEARTH_GATEWAY_STATS_MS", "100")
            .env("HEARTH_LOG", "info");
        let (child, logs, line) = spawn_until_ready(command, "gateway ready").await;
        let udp = log_field(&line, "udp").parse().expect("udp= is an address");
        Self { child, udp, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Waits until `count` log lines contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        for _ in 0..400 {
            if self
                .logs
                .lock()
                .expect("logs")
                .iter()
                .filter(|l| l.contains(needle))
                .count()
                >= count
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the gateway never logged {needle:?} {count} times:\n{}",
            self.logs()
        );
    }

    /// Waits for a stats line saying `queued=` is `records` (all accepted).
    pub async fn wait_for_queued(&self, records: u64) {
        let needle = format!("queued={records} ");
        for _ in 0..300 {
            if self
                .logs
                .lock()
                .expect("logs")
                .iter()
                .any(|l| l.contains("gateway stats") && l.contains(&needle))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway never reported {needle}:\n{}", self.logs());
    }

    /// The address of its `/metrics` endpoint (started with
    /// `HEARTH_GATEWAY_METRICS_LISTEN`), from its ready line.
    pub fn metrics_addr(&self) -> SocketAddr {
        let logs = self.logs.lock().expect("logs");
        let ready = logs
            .iter()
            .find(|l| l.contains("gateway ready"))
            .expect("a ready line");
        log_field(ready, "metrics")
            .parse()
            .unwrap_or_else(|_| panic!("metrics= is an address in {ready:?}"))
    }

    /// The body of `GET /metrics`, after checking the status is 200.
    pub async fn metrics(&self) -> String {
        let response = http_get(self.metrics_addr(), "/metrics").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        body.to_owned()
    }

    /// The value of the sample `name` (with its labels, e.g.
    /// `dropped_total{reason="oversize"}`) in a scrape of `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let body = self.metrics().await;
        metric_value(&body, name).unwrap_or_else(|| panic!("no {name} in\n{body}"))
    }

    /// Stops the gateway with SIGTERM and returns its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for the gateway")
    }

    /// Kills the gateway with SIGKILL, as a power cut would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `device`'s delivery over the last day: `GetDelivery`'s total.
pub async fn delivery_of(
    telemetry: &mut TelemetryServiceClient<GrpcChannel>,
    device: &str,
) -> DeliveryFigures {
    telemetry
        .get_delivery(GetDeliveryRequest {
            device_id: device.into(),
            ..Default::default()
        })
        .await
        .expect("GetDelivery")
        .into_inner()
        .total
        .expect("a total")
}

/// The value of sample `name` in Prometheus text `body`.
pub fn metric_value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Connects to broker `url` as `client_id` with `login` (none: anonymous);
/// the connection, or the CONNACK code it was refused with.
pub async fn mqtt_connect(
    url: &str,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), rumqttc::ConnectReturnCode> {
    let mut options = hearth_runtime::mqtt::options(url, client_id, None).expect("MQTT options");
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = hearth_runtime::mqtt::client(options, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .expect("an answer to CONNECT")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, events)),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("connecting: {e}"),
        }
    }
}

/// The next packet the broker sends on `events`, within 10 s.
pub async fn next_packet(events: &mut EventLoop) -> Packet {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(p) = events.poll().await.expect("the connection holds") {
                return p;
            }
        }
    })
    .await
    .expect("a packet from the broker")
}

/// Debian's build of Mosquitto's dynamic security plugin.
pub const DYNSEC_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

/// Hearth's Mosquitto plugin (`mosquitto-plugin/`), built with the binaries.
pub fn hearth_mosquitto_plugin() -> PathBuf {
    binary("hearth-mosquitto-plugin", "libhearth_mosquitto.so")
}

/// A Mosquitto of a test's own on a free port, so the test can stop it (or
/// use it as a second broker) without disturbing the others. Killed on drop.
pub struct PrivateBroker {
    child: Child,
    pub port: u16,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        Self::start_on(port).await
    }

    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .spawn()
            .expect("starting mosquitto (Debian package mosquitto)");
        Self::listening(child, port).await
    }

    /// A broker on a free port with `config` (lines of `mosquitto.conf`)
    /// added to an anonymous loopback listener.
    pub async fn start_with_config(config: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let path = std::env::temp_dir().join(format!("{}.conf", unique("mosquitto")));
        std::fs::write(
            &path,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{config}\n"),
        )
        .expect("writing mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .spawn()
            .expect("starting mosquitto (Debian package mosquitto)");
        Self::listening(child, port).await
    }

    /// A broker on a free port with Mosquitto's dynamic security plugin,
    /// whose admin is `admin` with `password` (`mosquitto_ctrl dynsec init`);
    /// anonymous clients are refused. Its files live in `dir`.
    pub async fn start_with_dynsec(dir: &TempDir, admin: &str, password: &str) -> Self {
        Self::start_with_dynsec_and(dir, admin, password, Some(&hearth_mosquitto_plugin())).await
    }

    /// [`start_with_dynsec`](Self::start_with_dynsec) with Hearth's plugin
    /// from `hearth_plugin` (a benchmark's release build) or, with none (its
    /// floor), without it.
    pub async fn start_with_dynsec_and(
        dir: &TempDir,
        admin: &str,
        password: &str,
        hearth_plugin: Option<&std::path::Path>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let state = dir.0.join("dynamic-security.json");
        let status = Command::new("mosquitto_ctrl")
            .args(["dynsec", "init"])
            .arg(&state)
            .args([admin, password])
            .stdout(Stdio::null())
            .status()
            .expect("running mosquitto_ctrl (Debian package mosquitto-clients)");
        assert!(status.success(), "mosquitto_ctrl dynsec init failed");
        let config = dir.0.join("mosquitto-dynsec.conf");
        // Why `user root`: started as root, Mosquitto would switch to its own
        // user, who may not write the plugin's file in a root-owned temp dir
        // (ignored when not started as root). Hearth's plugin first, as
        // deploy/mosquitto-dynsec.conf loads it: only the admin (Hearth)
        // may retain.
        let hearths = hearth_plugin.map_or_else(String::new, |plugin| {
            format!(
                "plugin {}\nplugin_opt_retainers {admin}\n",
                plugin.display()
            )
        });
        std::fs::write(
            &config,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n\
                 max_inflight_messages 1000\nmax_queued_messages 100000\n{hearths}\
                 plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {}\n",
                state.display()
            ),
        )
        .expect("writing mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto (Debian package mosquitto)");
        Self::listening(child, port).await
    }

    async fn listening(child: Child, port: u16) -> Self {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mosquitto did not listen on {port}");
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker now.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback, returning the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers; a binary body comes back lossily
/// as text (the tests read the head).
pub async fn http_get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("writing the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("reading the response");
    String::from_utf8_lossy(&response).into_owned()
}

/// Adds `authorization: Bearer …` to every gRPC call, when there is a token
/// (`Bearer::default()`: none, for open mode).
#[derive(Clone, Default)]
pub struct Bearer(pub Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// A session of `username`, logged in with `password` through `channel`.
    pub async fn login(
        channel: GrpcChannel,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let session = hearth_proto::v1::auth_service_client::AuthServiceClient::new(channel)
            .login(hearth_proto::v1::LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .await?
            .into_inner();
        Ok(Self(Some(format!("Bearer {}", session.token).parse()?)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// An MQTT connection acting as a device: publishes with QoS 1 and waits for
/// the broker's acknowledgement.
pub struct DeviceConnection {
    pub client: AsyncClient,
    events: EventLoop,
}

impl DeviceConnection {
    async fn connect(options: MqttOptions) -> Self {
        let (client, mut events) = hearth_runtime::mqtt::client(options, 64);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::Incoming(Packet::ConnAck(_)) =
                    events.poll().await.expect("connecting to the broker")
                {
                    break;
                }
            }
        })
        .await
        .expect("broker accepted the connection");
        Self { client, events }
    }

    /// Publishes `payload` on `topic` with QoS 1 and waits for its PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queueing the publish");
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::Incoming(Packet::PubAck(_)) =
                    self.events.poll().await.expect("broker connection")
                {
                    break;
                }
            }
        })
        .await
        .expect("broker acknowledged the publish");
    }

    /// Publishes a reading batch on the device's readings topic.
    pub async fn publish_readings(
        &mut self,
        topics: &Topics,
        home: &str,
        device: &str,
        batch: &hearth_proto::v1::ReadingBatch,
    ) {
        use prost::Message as _;
        let topic = topics
            .device(home, device, Channel::Readings)
            .expect("valid topic");
        self.publish(&topic, batch.encode_to_vec()).await;
    }
}

/// Runs a simulated actuator agent (the real `hearth_device` loop the agent runs) for
/// `device` in this process; returns its output to watch and a handle that
/// stops it when dropped.
pub fn spawn_actuator(
    app: &TestApp,
    home: &str,
    device: &str,
) -> (hearth_device::sim::SimulatedOutput, AgentGuard) {
    spawn_actuator_on(app, &app.mqtt_url, home, device)
}

/// Like [`spawn_actuator`], connected to the broker at `broker_url`.
pub fn spawn_actuator_on(
    app: &TestApp,
    broker_url: &str,
    home: &str,
    device: &str,
) -> (hearth_device::sim::SimulatedOutput, AgentGuard) {
    let output = hearth_device::sim::SimulatedOutput::default();
    let link = hearth_device::mqtt::DeviceLink {
        broker_url: broker_url.to_owned(),
        topics: app.topics.clone(),
        home_id: home.into(),
        device_id: device.into(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(hearth_device::mqtt::run_actuator(
        link,
        output.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    (
        output,
        AgentGuard {
            _stop: stop,
            handle,
        },
    )
}

/// Stops an in-process agent when dropped.
pub struct AgentGuard {
    _stop: tokio::sync::oneshot::Sender<()>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A running `hearth-agent` process (the real binary), killed on drop.
pub struct TestAgent {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestAgent {
    /// Starts `hearth-agent` with only `env` (and `PATH`) set, and waits for
    /// its "agent started" line.
    pub async fn spawn(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary("hearth-agent", "hearth-agent"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTH_LOG", "info,rumqttc=warn")
            .envs(env.iter().copied());
        let (child, logs, _) = spawn_until_ready(command, "agent started").await;
        Self { child, logs }
    }

    /// The agent to run as device `device` of `home` against `app`'s broker.
    pub fn mqtt_env<'a>(
        app: &'a TestApp,
        home: &'a str,
        device: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("HEARTH_AGENT_MQTT_URL", app.mqtt_url.as_str()),
            ("HEARTH_TOPIC_PREFIX", app.topics.prefix()),
            ("HEARTH_AGENT_HOME", home),
            ("HEARTH_AGENT_DEVICE", device),
        ]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Kills the agent with SIGKILL: a crash, no last word.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the agent with SIGTERM and returns its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for the agent")
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Declares a system test once per [`Backend`]: `both!(name)` expects an
/// `async fn name(backend: Backend)` and makes `name::embedded` and
/// `name::mariadb_mosquitto`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb_mosquitto() {
                super::$name($crate::Backend::External).await
            }
        }
    };
}

impl TestApp {
    /// A second `hearth` process on the same database and broker (External
    /// only: the embedded broker belongs to one process), named `replica`
    /// (`HEARTH_REPLICA`: a persistent MQTT session) or not. Its database is
    /// left to the first one to drop.
    pub async fn spawn_replica(&self, replica: Option<&str>) -> TestApp {
        self.spawn_replica_with(replica, &[]).await
    }

    /// [`spawn_replica`](Self::spawn_replica) with `extra` environment
    /// variables on top of this one's (e.g. other `HEARTH_ROLES`).
    pub async fn spawn_replica_with(
        &self,
        replica: Option<&str>,
        extra: &[(&str, &str)],
    ) -> TestApp {
        assert_eq!(
            self.backend,
            Backend::External,
            "replicas share an external database and broker"
        );
        let dir = TempDir::new();
        let mut command = Command::new(hearth_binary());
        command
            .current_dir(&dir.0)
            .env_clear()
            .envs(
                self.command
                    .iter()
                    .filter(|(k, _)| k != "HEARTH_REPLICA")
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("HEARTH_LISTEN", "127.0.0.1:0");
        if let Some(name) = replica {
            command.env("HEARTH_REPLICA", name);
        }
        command.envs(extra.iter().copied());
        let env: Vec<(String, String)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        let (child, logs, line) = spawn_until_ready(command, "hearth ready").await;
        TestApp {
            child,
            backend: self.backend,
            http: log_field(&line, "http")
                .parse()
                .expect("http= is an address"),
            mqtt_url: self.mqtt_url.clone(),
            topics: self.topics.clone(),
            ca_file: self.ca_file.clone(),
            logs,
            database: None,
            command: env,
            _dir: dir,
        }
    }

    /// Kills `hearth` with SIGKILL: no shutdown, no draining.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The value of an unlabelled metric in `/metrics` (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}
