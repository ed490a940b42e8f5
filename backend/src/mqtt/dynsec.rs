//! Mosquitto's dynamic security plugin, managed by Hearth over MQTT: JSON
//! commands on `$CONTROL/dynamic-security/v1`, answers on
//! `$CONTROL/dynamic-security/v1/response` (see the plugin's README).
//!
//! Hearth logs in as the plugin's admin (HEARTH_MQTT_DYNSEC_ADMIN) and keeps:
//! - a role `hearth-backend` allowed everything, given to the admin client,
//!   which is also how every replica logs in for its own connections;
//! - per device, a role `hearth-device-{id}` that may publish only the
//!   device's `readings`, `reported` and `status` topics and subscribe only
//!   to its `desired` topic, and a client (username = the device id) with
//!   that role, fixed to the client id `hearth-agent-{id}` so it can take
//!   over neither a replica's session nor another device's.
//!
//! - per API token that acts on the broker (an ingest token: a LAN
//!   gateway's bridge; an operator's or admin's while the Home Assistant
//!   bridge is on: Home Assistant), a role `hearth-token-{name}` and a
//!   client `token.{name}` whose password is the token, fixed to the client
//!   id `hearth-token-{name}`. A gateway publishes its devices' `readings`,
//!   `reported` and `status`, subscribes to desired states with the
//!   bridge's wildcard, and receives only its devices'. Home Assistant
//!   subscribes to every discovery config and receives only its homes',
//!   reads its homes' entities and publishes their commands.
//!
//! The plugin's defaults do the rest: anonymous clients are refused,
//! publishing and subscribing are denied unless a role allows them.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::{bail, Context as _};
use hearth_proto::topics::{
    agent_client_id, token_client_id, token_username, Channel, HomeAssistantTopics, Topics,
};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::domain::{DeviceId, DeviceScope, Grant, HomeId, Role, TokenName};

const CONTROL: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";
/// The role of Hearth's own connections.
pub const BACKEND_ROLE: &str = "hearth-backend";
/// Longest wait for the plugin's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Answers the plugin gives to a command whose effect is there already.
const ALREADY: [&str; 3] = [
    "Role already exists",
    "Client already exists",
    "ACL with this topic already exists",
];

type Pending = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<Vec<Value>>>>>;

pub struct Dynsec {
    client: AsyncClient,
    topics: Topics,
    admin: String,
    pending: Pending,
    /// One batch of commands at a time. Why: a device's role must exist
    /// before its client names it.
    one_at_a_time: Mutex<()>,
}

/// The role of device `device`.
fn device_role(device: &DeviceId) -> String {
    format!("hearth-device-{device}")
}

/// The role of API token `name`.
fn token_role(name: &TokenName) -> String {
    format!("hearth-token-{name}")
}

impl Dynsec {
    /// Connects to `url` as `admin` (the URL carries the login) and keeps the
    /// connection until `stop`.
    pub async fn connect(
        url: &str,
        admin: &str,
        replica: &str,
        topics: Topics,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let client_id = format!(
            "{}{replica}-{:04x}-dynsec",
            hearth_proto::topics::BACKEND_CLIENT_PREFIX,
            rand::random::<u16>()
        );
        let options = hearth_runtime::mqtt::options(url, &client_id, None)
            .context("HEARTH_MQTT_URL for dynamic security")?;
        let (client, mut events) = hearth_runtime::mqtt::client(options, 64);
        let accepted = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        return match ack.code {
                            rumqttc::ConnectReturnCode::Success => Ok(()),
                            code => Err(format!("{code:?}")),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        match accepted {
            Ok(Ok(())) => {}
            Ok(Err(why)) => bail!(
                "the broker refused HEARTH_MQTT_DYNSEC_ADMIN={admin} ({why}): check the password and that the dynamic security plugin is loaded"
            ),
            Err(_) => bail!("the broker did not answer the dynamic security login within 5 s"),
        }
        client
            .subscribe(RESPONSE, QoS::AtLeastOnce)
            .await
            .context("subscribing to the dynamic security answers")?;
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        let resubscribe = client.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.poll() => event,
                };
                match event {
                    // A clean session: the subscription goes with the
                    // connection (and Mosquitto ends it when the admin's
                    // roles change).
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Err(e) = resubscribe.try_subscribe(RESPONSE, QoS::AtLeastOnce) {
                            warn!(error = %e, "resubscribing to the dynamic security answers");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE => {
                        let Ok(body) = serde_json::from_slice::<Value>(&p.payload) else {
                            warn!("unreadable answer from the dynamic security plugin");
                            continue;
                        };
                        let responses = body["responses"].as_array().cloned().unwrap_or_default();
                        let Some(id) = responses
                            .first()
                            .and_then(|r| r["correlationData"].as_str())
                        else {
                            continue;
                        };
                        if let Some(waiting) = answers.lock().expect("pending").remove(id) {
                            let _ = waiting.send(responses);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "dynamic security connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Arc::new(Self {
            client,
            topics,
            admin: admin.to_owned(),
            pending,
            one_at_a_time: Mutex::new(()),
        }))
    }

    /// Runs `commands` as one batch and returns the plugin's answers, one per
    /// command, waiting at most `within`.
    async fn request(
        &self,
        mut commands: Vec<Value>,
        within: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let _turn = self.one_at_a_time.lock().await;
        let id = format!("{:016x}", rand::random::<u64>());
        for c in &mut commands {
            c["correlationData"] = json!(id);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id.clone(), tx);
        let body = json!({ "commands": commands }).to_string();
        self.client
            .publish(CONTROL, QoS::AtLeastOnce, false, body)
            .await
            .context("sending dynamic security commands")?;
        let answer = tokio::time::timeout(within, rx).await;
        self.pending.lock().expect("pending").remove(&id);
        match answer {
            Ok(Ok(r)) => Ok(r),
            _ => bail!("the dynamic security plugin did not answer within {within:?}"),
        }
    }

    /// Runs `commands` as one batch; the errors of those that failed, other
    /// than "exists already".
    async fn run(&self, commands: Vec<Value>) -> anyhow::Result<Vec<(String, String)>> {
        let responses = self.request(commands, ANSWER_WITHIN).await?;
        Ok(responses
            .iter()
            .filter_map(|r| {
                let error = r["error"].as_str()?;
                (!ALREADY.contains(&error)).then(|| {
                    (
                        r["command"].as_str().unwrap_or("?").to_owned(),
                        error.to_owned(),
                    )
                })
            })
            .collect())
    }

    /// Runs `commands` and fails on any error but "exists already".
    async fn run_all(&self, commands: Vec<Value>) -> anyhow::Result<()> {
        let errors = self.run(commands).await?;
        // Why: 2.0.11 answers addClientRole of a role the client has already
        // with "Internal error" (and changes nothing).
        let errors = errors
            .iter()
            .filter(|(command, error)| !(command == "addClientRole" && error == "Internal error"));
        if let Some((command, error)) = errors.clone().next() {
            bail!("dynamic security {command}: {error}");
        }
        Ok(())
    }

    /// Hearth's own role, allowed everything, on the admin client.
    ///
    /// Why the admin gets the role only if it lacks it, and without waiting
    /// for the answer: changing a client's roles makes Mosquitto disconnect
    /// every connection logged in as it (measured with 2.0.11), this one and
    /// every replica's included; so it happens once, on the first start, and
    /// the answer is lost with the connection, which comes back.
    pub async fn ensure_backend(&self) -> anyhow::Result<()> {
        self.run_all(vec![
            json!({"command": "createRole", "rolename": BACKEND_ROLE,
                "textdescription": "Hearth's replicas: every topic"}),
            json!({"command": "addRoleACL", "rolename": BACKEND_ROLE,
                "acltype": "publishClientSend", "topic": "#", "allow": true}),
            json!({"command": "addRoleACL", "rolename": BACKEND_ROLE,
                "acltype": "subscribePattern", "topic": "#", "allow": true}),
            json!({"command": "addRoleACL", "rolename": BACKEND_ROLE,
                "acltype": "subscribePattern", "topic": "$SYS/#", "allow": true}),
        ])
        .await?;
        if self.admin_has_backend_role(ANSWER_WITHIN).await? {
            return Ok(());
        }
        let body = json!({"commands": [
            {"command": "addClientRole", "username": self.admin, "rolename": BACKEND_ROLE}
        ]});
        self.client
            .publish(CONTROL, QoS::AtLeastOnce, false, body.to_string())
            .await
            .context("sending dynamic security commands")?;
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN * 2;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Errors here are the connection coming back.
            if let Ok(true) = self.admin_has_backend_role(Duration::from_secs(1)).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the admin {} did not get the role {BACKEND_ROLE}",
                    self.admin
                );
            }
        }
    }

    async fn admin_has_backend_role(&self, within: Duration) -> anyhow::Result<bool> {
        let answer = self
            .request(
                vec![json!({"command": "getClient", "username": self.admin})],
                within,
            )
            .await?;
        let roles = answer
            .first()
            .and_then(|r| r["data"]["client"]["roles"].as_array().cloned())
            .unwrap_or_default();
        Ok(roles.iter().any(|r| r["rolename"] == BACKEND_ROLE))
    }

    /// Ensures `device`'s role, ACLs and client; with `password`, sets it.
    /// Returns whether the client had to be created.
    pub async fn set_device(
        &self,
        home: &HomeId,
        device: &DeviceId,
        password: Option<&str>,
    ) -> anyhow::Result<bool> {
        let role = device_role(device);
        let topic = |channel| {
            self.topics
                .device(home.as_str(), device.as_str(), channel)
                .context("device topic")
        };
        let mut commands = vec![json!({"command": "createRole", "rolename": role,
            "textdescription": format!("Hearth device {device}: its own topics")})];
        for channel in [Channel::Readings, Channel::Reported, Channel::Status] {
            commands.push(json!({"command": "addRoleACL", "rolename": role,
                "acltype": "publishClientSend", "topic": topic(channel)?, "allow": true}));
        }
        commands.push(json!({"command": "addRoleACL", "rolename": role,
            "acltype": "subscribeLiteral", "topic": topic(Channel::Desired)?, "allow": true}));
        let existed = self.client_exists(device.as_str()).await?;
        // Why an existing client is changed only with a new password: any
        // change to a client makes Mosquitto disconnect it, and a replica's
        // start (which passes none) must not cut every device off.
        if let (true, Some(password)) = (existed, password) {
            commands.push(
                json!({"command": "setClientId", "username": device.as_str(),
                "clientid": agent_client_id(device.as_str())}),
            );
            commands.push(
                json!({"command": "addClientRole", "username": device.as_str(), "rolename": role}),
            );
            commands.push(json!({"command": "setClientPassword",
                "username": device.as_str(), "password": password}));
        } else if !existed {
            let mut client = json!({"command": "createClient", "username": device.as_str(),
                "clientid": agent_client_id(device.as_str()),
                "roles": [{"rolename": role}]});
            if let Some(password) = password {
                client["password"] = json!(password);
            }
            commands.push(client);
        }
        self.run_all(commands)
            .await
            .with_context(|| format!("device {device}"))?;
        Ok(!existed)
    }

    /// Makes API token `name`'s role and client, the token as its
    /// password: its homes' devices (or those of `devices`) for the
    /// ingest grants among `grants` (a gateway's bridge), and, with `ha`
    /// (Hearth's Home Assistant bridge on), its homes' entities for the
    /// operator and admin grants (Home Assistant). Why the receive rules:
    /// the gateway's bridge subscribes to every device's desired state and
    /// Home Assistant to every discovery config, and the plugin lets a
    /// client receive whatever it subscribed to unless a rule denies it.
    pub async fn set_token(
        &self,
        name: &TokenName,
        grants: &[Grant],
        devices: &DeviceScope,
        ha: Option<&HomeAssistantTopics>,
        password: &str,
    ) -> anyhow::Result<()> {
        let role = token_role(name);
        let acl = |acltype: &str, topic: &str, allow: bool, priority: i32| {
            json!({"command": "addRoleACL", "rolename": role, "acltype": acltype,
                "topic": topic, "allow": allow, "priority": priority})
        };
        let all_desired = self.topics.all_devices(Channel::Desired);
        let mut commands = vec![
            json!({"command": "createRole", "rolename": role,
                "textdescription": format!("Hearth API token {name}: its homes' topics")}),
            acl("subscribePattern", &all_desired, true, 0),
            acl("publishClientReceive", &all_desired, false, -1),
        ];
        // `None`: every device of the home (a `+` level).
        let ids: Vec<Option<&str>> = match devices {
            DeviceScope::All => vec![None],
            DeviceScope::Only(devices) => devices.iter().map(|d| Some(d.as_str())).collect(),
        };
        for grant in grants.iter().filter(|g| g.role == Role::Ingest) {
            for id in &ids {
                let home = grant.home.as_str();
                let topic = |channel| {
                    match id {
                        Some(id) => self.topics.device(home, id, channel),
                        None => self.topics.home_devices(home, channel),
                    }
                    .context("token topic")
                };
                for channel in [Channel::Readings, Channel::Reported, Channel::Status] {
                    commands.push(acl("publishClientSend", &topic(channel)?, true, 0));
                }
                commands.push(acl(
                    "publishClientReceive",
                    &topic(Channel::Desired)?,
                    true,
                    1,
                ));
            }
        }
        // Home Assistant: the discovery configs of its homes only (a home's
        // node level, see `HomeAssistantTopics`), its homes' states and
        // commands, and its own birth.
        let assisted: Vec<&str> = grants
            .iter()
            .filter(|g| g.role.includes(Role::Operator))
            .map(|g| g.home.as_str())
            .collect();
        if let Some(ha) = ha.filter(|_| !assisted.is_empty()) {
            for filter in ha.discovery_filters() {
                commands.push(acl("subscribeLiteral", &filter, true, 0));
                commands.push(acl("publishClientReceive", &filter, false, -1));
            }
            commands.push(acl("subscribeLiteral", &ha.birth(), true, 0));
            commands.push(acl("publishClientSend", &ha.birth(), true, 0));
            for home in assisted {
                commands.push(acl("publishClientReceive", &ha.home_configs(home), true, 1));
                commands.push(acl("subscribePattern", &ha.home_entities(home), true, 0));
                commands.push(acl("publishClientSend", &ha.home_commands(home), true, 0));
            }
        }
        commands.push(
            json!({"command": "createClient", "username": token_username(name.as_str()),
            "clientid": token_client_id(name.as_str()), "password": password,
            "roles": [{"rolename": role}]}),
        );
        self.run_all(commands)
            .await
            .with_context(|| format!("token {name}"))
    }

    /// Deletes token `name`'s client (the broker disconnects it) and role.
    pub async fn remove_token(&self, name: &TokenName) -> anyhow::Result<()> {
        self.remove(&token_username(name.as_str()), &token_role(name))
            .await
    }

    /// Whether token `name`'s client is on the broker.
    pub async fn token_login_exists(&self, name: &TokenName) -> anyhow::Result<bool> {
        self.client_exists(&token_username(name.as_str())).await
    }

    async fn client_exists(&self, username: &str) -> anyhow::Result<bool> {
        let errors = self
            .run(vec![json!({"command": "getClient", "username": username})])
            .await?;
        Ok(errors.is_empty())
    }

    /// Deletes `device`'s client (the broker disconnects it) and role.
    pub async fn remove_device(&self, device: &DeviceId) -> anyhow::Result<()> {
        self.remove(device.as_str(), &device_role(device)).await
    }

    /// Deletes the client `username` and the role `role`, if there.
    async fn remove(&self, username: &str, role: &str) -> anyhow::Result<()> {
        let errors = self
            .run(vec![
                json!({"command": "deleteClient", "username": username}),
                json!({"command": "deleteRole", "rolename": role}),
            ])
            .await?;
        match errors
            .iter()
            .find(|(_, e)| e != "Client not found" && e != "Role not found")
        {
            Some((command, error)) => bail!("dynamic security {command}: {error}"),
            None => Ok(()),
        }
    }
}
