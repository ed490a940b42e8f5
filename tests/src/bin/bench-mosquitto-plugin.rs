//! Benchmark: what Hearth's Mosquitto plugin (`mosquitto-plugin/`) costs the
//! broker.
//!
//! ```sh
//! cargo run --release -p hearth-tests --bin bench-mosquitto-plugin [-- [MESSAGES [ROUNDS]]]
//! ```
//!
//! Each round starts a Mosquitto of its own with dynamic security alone (the
//! floor: the same work with no Hearth in it) and one with Hearth's plugin
//! (release build) loaded before it, in turn. In each, a device's login
//! publishes MESSAGES (default 200,000) QoS 1 messages on its own readings
//! topic, at most 500 ahead of delivery, and a replica's login, subscribed to
//! every device's readings as Hearth is, receives them: each message passes
//! both access checks, the device's publish and its delivery. The figure is
//! messages delivered per second. Prints every run and the ratio of the
//! medians over ROUNDS (default 3); writes `target/bench/mosquitto-plugin.json`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hearth_tests::{build_release, release_binary, workspace_dir, PrivateBroker, TempDir};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;

const ADMIN: &str = "hearth-admin";
const WINDOW: u64 = 500;
const TOPIC: &str = "bench/v1/home/sensor/readings";

fn options(url: &str, client_id: &str, login: (&str, &str)) -> anyhow::Result<MqttOptions> {
    let mut options = hearth_runtime::mqtt::options(url, client_id, None)?;
    options.set_credentials(login.0, login.1);
    options.set_inflight(1_000);
    options.set_request_channel_capacity(4_096);
    Ok(options)
}

/// Polls `events` until `done` says a packet is the one awaited.
async fn until(events: &mut EventLoop, done: impl Fn(&Packet) -> bool) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(p) = events.poll().await? {
                if done(&p) {
                    return anyhow::Ok(());
                }
            }
        }
    })
    .await
    .context("the broker did not answer within 10 s")?
}

/// Gives the device and the replica their logins and roles, as Hearth does,
/// in one request to the dynamic security plugin.
async fn logins(url: &str, password: &str) -> anyhow::Result<()> {
    let (admin, mut events) = AsyncClient::new(options(url, "bench-admin", (ADMIN, password))?, 16);
    admin
        .subscribe("$CONTROL/dynamic-security/v1/response", QoS::AtLeastOnce)
        .await?;
    until(&mut events, |p| matches!(p, Packet::SubAck(_))).await?;
    let commands = json!({ "commands": [
        { "command": "createRole", "rolename": "device" },
        { "command": "addRoleACL", "rolename": "device", "acltype": "publishClientSend",
          "topic": TOPIC, "allow": true },
        { "command": "createClient", "username": "device", "password": "device-pw",
          "roles": [{ "rolename": "device" }] },
        { "command": "createRole", "rolename": "replica" },
        { "command": "addRoleACL", "rolename": "replica", "acltype": "subscribePattern",
          "topic": "bench/v1/+/+/readings", "allow": true },
        { "command": "createClient", "username": "replica", "password": "replica-pw",
          "roles": [{ "rolename": "replica" }] },
    ]});
    admin
        .publish(
            "$CONTROL/dynamic-security/v1",
            QoS::AtLeastOnce,
            false,
            commands.to_string(),
        )
        .await?;
    let answer = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = answer.clone();
    until(&mut events, move |p| match p {
        Packet::Publish(p) => {
            *seen.lock().unwrap() = String::from_utf8_lossy(&p.payload).into_owned();
            true
        }
        _ => false,
    })
    .await?;
    let answer = answer.lock().unwrap().clone();
    anyhow::ensure!(!answer.contains("\"error\""), "dynamic security: {answer}");
    Ok(())
}

/// Messages delivered per second through `broker`, `messages` of them.
async fn run(broker: &PrivateBroker, password: &str, messages: u64) -> anyhow::Result<f64> {
    let url = broker.url();
    logins(&url, password).await?;
    let (replica, mut replica_events) =
        AsyncClient::new(options(&url, "replica", ("replica", "replica-pw"))?, 16);
    replica
        .subscribe("bench/v1/+/+/readings", QoS::AtLeastOnce)
        .await?;
    until(&mut replica_events, |p| matches!(p, Packet::SubAck(_))).await?;
    let received = Arc::new(AtomicU64::new(0));
    let space = Arc::new(tokio::sync::Notify::new());
    let receiver = {
        let (received, space) = (received.clone(), space.clone());
        tokio::spawn(async move {
            let _replica = replica;
            while let Ok(event) = replica_events.poll().await {
                if let Event::Incoming(Packet::Publish(_)) = event {
                    received.fetch_add(1, Ordering::Relaxed);
                    space.notify_one();
                }
            }
        })
    };
    let (device, mut device_events) =
        AsyncClient::new(options(&url, "device", ("device", "device-pw"))?, 4_096);
    until(&mut device_events, |p| matches!(p, Packet::ConnAck(_))).await?;
    let sender = tokio::spawn(async move { while device_events.poll().await.is_ok() {} });

    // A reading batch's size: three readings, its ids and sequence number.
    let payload = vec![0x2a_u8; 64];
    let started = Instant::now();
    for published in 0..messages {
        while published - received.load(Ordering::Relaxed) >= WINDOW {
            let _ = tokio::time::timeout(Duration::from_millis(50), space.notified()).await;
        }
        device
            .publish(TOPIC, QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    while received.load(Ordering::Relaxed) < messages {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {messages} delivered",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    sender.abort();
    receiver.abort();
    Ok(rate)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    build_release(&["-p", "hearth-mosquitto-plugin"])?;
    let plugin = release_binary("libhearth_mosquitto.so");
    let (mut floor, mut hearth) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for with_plugin in [false, true] {
            let dir = TempDir::new();
            let password = format!("pw-{:016x}", rand::random::<u64>());
            let broker = PrivateBroker::start_with_dynsec_and(
                &dir,
                ADMIN,
                &password,
                with_plugin.then_some(plugin.as_path()),
            )
            .await;
            let rate = run(&broker, &password, messages).await?;
            broker.stop();
            let _ = std::fs::remove_dir_all(&dir.0);
            if with_plugin { &mut hearth } else { &mut floor }.push(rate);
        }
        println!(
            "round {round}: dynamic security alone {:.0} msg/s, with Hearth's plugin {:.0} msg/s",
            floor[round - 1],
            hearth[round - 1]
        );
    }
    let (floor_median, hearth_median) = (median(floor.clone()), median(hearth.clone()));
    let ratio = hearth_median / floor_median;
    println!(
        "median of {rounds}: floor {floor_median:.0} msg/s, with Hearth's plugin \
         {hearth_median:.0} msg/s: {ratio:.3} of the floor"
    );
    let dir = workspace_dir().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("mosquitto-plugin.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({
            "messages": messages,
            "floor_msgs_per_s": floor,
            "plugin_msgs_per_s": hearth,
            "ratio_of_medians": ratio,
        }))?,
    )?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
