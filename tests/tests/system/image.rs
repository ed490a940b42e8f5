//! The images the manifests run, built by `k8s/images.sh` in
//! `./hearth.sh test`, started with podman as UID 10001 on a read-only root:
//!
//! - `hearth` (`k8s/Containerfile.scratch`), against the machine's MariaDB
//!   and Mosquitto: it answers health, serves the app at `/` and takes a
//!   `SetMode`;
//! - `hearth-mosquitto` (`k8s/Containerfile.mosquitto.scratch`), with the
//!   manifest's init command and `k8s/base/mosquitto-dynsec.conf`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, CreateHomeRequest, DeviceKind, Mode,
    RegisterDeviceRequest, SetModeRequest,
};
use hearth_tests::{
    external_mqtt_url, fresh_mysql_database, http_get, log_field, mqtt_connect as connect,
    next_packet, spawn_until_ready, unique, workspace_dir, TempDir,
};
use rumqttc::{ConnectReturnCode, Packet, QoS};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", &self.0]).output();
    }
}

/// `podman run --rm --name NAME` with what every test here runs with: runc,
/// the host's network, a read-only root, and limits these machines take.
fn podman_run(name: &str) -> Command {
    let mut podman = Command::new("podman");
    podman
        .args(["--runtime", "/usr/sbin/runc", "run", "--rm", "--name", name])
        .args(["--network", "host", "--read-only", "--tmpfs", "/tmp"])
        // Why: these machines refuse podman's default (raised) limits.
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
    podman
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hearth_image_serves_health_the_app_and_set_mode() {
    let (_, database_url) = fresh_mysql_database().await;
    let name = unique("hearth-image");
    let mut podman = podman_run(&name);
    podman
        .args(["-e", "HEARTH_LISTEN=127.0.0.1:0", "-e", "HEARTH_DEMO=false"])
        .args(["-e", &format!("HEARTH_DATABASE_URL={database_url}")])
        .args(["-e", &format!("HEARTH_MQTT_URL={}", external_mqtt_url())])
        .args(["-e", &format!("HEARTH_TOPIC_PREFIX={}/hearth", unique("t"))])
        .arg("localhost/hearth:dev");
    let _container = Container(name.clone());
    let (_podman, logs, ready) = spawn_until_ready(podman, "hearth ready").await;
    let http: std::net::SocketAddr = log_field(&ready, "http").parse().expect("http=");
    let logs = || logs.lock().expect("logs").join("\n");

    let user = Command::new("podman")
        .args(["inspect", "--format", "{{.Config.User}}", &name])
        .output()
        .expect("podman inspect");
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001:10001");

    let channel = tonic::transport::Channel::from_shared(format!("http://{http}"))
        .expect("url")
        .connect()
        .await
        .expect("connecting to the container");
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32, "{}", logs());

    let page = http_get(http, "/").await;
    assert!(page.contains("<!doctype html>"), "{page}");
    assert!(
        page.contains("hearth-frontend-"),
        "the built app, not the fallback page: {page}"
    );

    let mut devices = DeviceServiceClient::new(channel);
    let (home, fan) = (unique("home"), unique("fan"));
    devices
        .create_home(CreateHomeRequest {
            id: home.clone(),
            name: "Image test".into(),
        })
        .await
        .expect("CreateHome");
    devices
        .register_device(RegisterDeviceRequest {
            home_id: home,
            id: fan.clone(),
            kind: DeviceKind::Fan as i32,
            name: String::new(),
        })
        .await
        .expect("RegisterDevice");
    let switched = devices
        .set_mode(SetModeRequest {
            device_id: fan,
            mode: Mode::On as i32,
            ..Default::default()
        })
        .await
        .expect("SetMode")
        .into_inner();
    assert_eq!(
        switched.desired.map(|d| (d.version, d.on)),
        Some((1, true)),
        "{}",
        logs()
    );
}

/// The `dynsec-init` container's shell command in k8s/base/mosquitto.yaml
/// (a folded scalar: its lines joined by spaces).
fn dynsec_init_command() -> String {
    let manifest = std::fs::read_to_string(workspace_dir().join("k8s/base/mosquitto.yaml"))
        .expect("reading mosquitto.yaml");
    let (_, from_init) = manifest
        .split_once("name: dynsec-init")
        .expect("the dynsec-init container");
    let (_, script) = from_init.split_once("- >-\n").expect("its folded command");
    script
        .lines()
        .take_while(|l| !l.trim_start().starts_with("volumeMounts:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

const ADMIN: &str = "hearth-admin";

/// The Mosquitto image, as k8s/base/mosquitto.yaml runs it: the init
/// command makes the dynamic security admin on the first start and leaves
/// the file alone after; the broker, with the shipped configuration, refuses
/// anonymous clients, and Hearth's plugin in it refuses a device's retained
/// publish while the admin's (Hearth's) is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mosquitto_image_makes_its_admin_once_and_only_hearth_retains() {
    let dir = TempDir::new();
    let (data, secrets, config) = (
        dir.0.join("data"),
        dir.0.join("secrets"),
        dir.0.join("config"),
    );
    for d in [&data, &secrets, &config] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::chown(&data, Some(10001), Some(10001)).expect("chown data");
    let password = format!("pw-{:016x}", rand::random::<u64>());
    // As a Secret's file is: no final newline.
    std::fs::write(secrets.join("mqtt-dynsec-password"), &password).unwrap();
    let state = data.join("dynamic-security.json");
    let init = dynsec_init_command();
    let mut first = None;
    for run in ["first", "second"] {
        let out = podman_run(&unique("mosquitto-init"))
            .args(["--user", "10001:10001"])
            .args(["-v", &format!("{}:/mosquitto/data", data.display())])
            .args(["-v", &format!("{}:/run/secrets/mqtt:ro", secrets.display())])
            .args(["localhost/hearth-mosquitto:dev", "sh", "-c", &init])
            .output()
            .expect("podman run");
        assert!(
            out.status.success(),
            "{run} init: {init}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made = std::fs::read(&state).expect("the dynamic security file");
        assert_eq!(*first.get_or_insert_with(|| made.clone()), made, "{run}");
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shipped = std::fs::read_to_string(workspace_dir().join("k8s/base/mosquitto-dynsec.conf"))
        .expect("reading mosquitto-dynsec.conf");
    assert!(shipped.contains("\nlistener 1883\n"), "{shipped}");
    std::fs::write(
        config.join("mosquitto-dynsec.conf"),
        shipped.replace(
            "\nlistener 1883\n",
            &format!("\nlistener {port} 127.0.0.1\n"),
        ),
    )
    .unwrap();
    let name = unique("mosquitto-image");
    let log = dir.0.join("mosquitto.log");
    let mut broker = podman_run(&name)
        .args(["--user", "10001:10001"])
        .args(["-v", &format!("{}:/mosquitto/data", data.display())])
        .args(["-v", &format!("{}:/mosquitto/config:ro", config.display())])
        .arg("localhost/hearth-mosquitto:dev")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman run");
    let _container = Container(name.clone());
    let broker_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            broker.try_wait().unwrap().is_none() && tokio::time::Instant::now() < deadline,
            "the broker did not listen: {}",
            broker_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A device's login and role, and every topic for the admin, as Hearth
    // gives them (README, "Devices' broker logins").
    let (device, device_password) = ("hearth-device-a", "device-pw");
    for command in [
        &["createRole", "device"][..],
        &[
            "addRoleACL",
            "device",
            "publishClientSend",
            "t/a/#",
            "allow",
        ],
        &["createClient", device, "-p", device_password],
        &["addClientRole", device, "device"],
        &["createRole", "everything"],
        &[
            "addRoleACL",
            "everything",
            "publishClientSend",
            "#",
            "allow",
        ],
        &["addRoleACL", "everything", "subscribePattern", "#", "allow"],
        &["addClientRole", ADMIN, "everything"],
    ] {
        let out = Command::new("mosquitto_ctrl")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-u", ADMIN, "-P", &password, "dynsec"])
            .args(command)
            .output()
            .expect("mosquitto_ctrl");
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let url = format!("mqtt://127.0.0.1:{port}");
    assert!(matches!(
        connect(&url, "anonymous", None).await.err(),
        Some(ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword)
    ));
    let (device_client, mut device_events) = connect(&url, device, Some((device, device_password)))
        .await
        .expect("the device's login");
    let (hearth, mut hearth_events) = connect(&url, "hearth", Some((ADMIN, &password)))
        .await
        .expect("the admin's login");
    for (client, events, topic) in [
        (&device_client, &mut device_events, "t/a/readings"),
        (&hearth, &mut hearth_events, "t/a/desired"),
    ] {
        client
            .publish(topic, QoS::AtLeastOnce, true, "kept?")
            .await
            .unwrap();
        loop {
            if let Packet::PubAck(_) = next_packet(events).await {
                break;
            }
        }
    }
    // What a new subscriber gets retained: Mosquitto sends it as it takes
    // the SUBSCRIBE, so before the marker published after it.
    hearth.subscribe("t/#", QoS::AtLeastOnce).await.unwrap();
    hearth
        .publish("t/marker", QoS::AtMostOnce, false, "marker")
        .await
        .unwrap();
    let mut retained = Vec::new();
    loop {
        if let Packet::Publish(p) = next_packet(&mut hearth_events).await {
            if p.topic == "t/marker" {
                break;
            }
            retained.push(p.topic);
        }
    }
    assert_eq!(retained, ["t/a/desired"], "{}", broker_log());
    // Why stop it first: Mosquitto's stdout is a pipe here, written out when
    // it exits.
    let stopped = Command::new("podman")
        .args(["stop", "--time", "10", &name])
        .output()
        .expect("podman stop");
    assert!(stopped.status.success(), "{stopped:?}");
    broker.wait().expect("podman run ends");
    assert!(
        broker_log()
            .contains("hearth: refused a retained publish from hearth-device-a on 't/a/readings'"),
        "{}",
        broker_log()
    );
}
