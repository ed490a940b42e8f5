//! The `hearth` image the manifests run (`k8s/Containerfile.scratch`, built
//! by `k8s/images.sh` in `./hearth.sh test`): started with podman against the
//! machine's MariaDB and Mosquitto, as UID 10001 on a read-only root, it
//! answers health, serves the app at `/` and takes a `SetMode`.

use std::process::Command;

use hearth_proto::v1::{
    device_service_client::DeviceServiceClient, CreateHomeRequest, DeviceKind, Mode,
    RegisterDeviceRequest, SetModeRequest,
};
use hearth_tests::{
    external_mqtt_url, fresh_mysql_database, http_get, log_field, spawn_until_ready, unique,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hearth_image_serves_health_the_app_and_set_mode() {
    let (_, database_url) = fresh_mysql_database().await;
    let name = unique("hearth-image");
    let mut podman = Command::new("podman");
    podman
        .args([
            "--runtime",
            "/usr/sbin/runc",
            "run",
            "--rm",
            "--name",
            &name,
        ])
        .args(["--network", "host", "--read-only", "--tmpfs", "/tmp"])
        // Why: these machines refuse podman's default (raised) limits.
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
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
