//! What each client of the broker may do on MQTT: the rules Hearth's guard
//! in front of the embedded broker applies packet by packet, and the same
//! rules the roles Hearth manages on Mosquitto (dynamic security) express.
//!
//! - **Hearth** (a backend replica, logged in with the backend credential):
//!   everything.
//! - **A device** (logged in with its own credential): publish only its own
//!   `readings`, `reported` and `status` topics, never retained; subscribe
//!   only to its own `desired` topic; connect only as
//!   [`agent_client_id`](hearth_proto::topics::agent_client_id).
//! - **An API token** given as the password (username `token`), in its
//!   homes only, by its role there (see [`BrokerClient::Token`]):
//!   - *ingest* (a LAN gateway's MQTT bridge): publish devices' `readings`,
//!     `reported` and `status`, never retained; read their `desired`;
//!   - *operator* or *admin* (Home Assistant, when Hearth's Home Assistant
//!     bridge is on): read the discovery configs and the entities' states,
//!     publish the entities' commands and Home Assistant's own `status`.
//!
//!   Both may subscribe with wildcards spanning homes (what the gateway and
//!   Home Assistant subscribe to); what the broker then delivers is filtered
//!   by [`BrokerClient::may_receive`], so nothing of another home reaches
//!   them.
//! - **Anonymous**, only while Hearth is in open mode (no user yet, loopback
//!   only: whoever reaches the port owns the machine anyway): anything but
//!   what only Hearth may do, i.e. publishing `desired` and retaining under
//!   Hearth's prefix.
//!
//! No client but Hearth may use a client id starting with
//! [`BACKEND_CLIENT_PREFIX`].

use hearth_proto::topics::{
    agent_client_id, is_under_prefix, Channel, HomeAssistantTopics, Topics, AGENT_CLIENT_PREFIX,
    BACKEND_CLIENT_PREFIX,
};

use crate::{
    access::{DeviceScope, Grant, Role},
    ids::{DeviceId, HomeId},
};

/// Who a broker connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerClient {
    Hearth,
    Device {
        home: HomeId,
        device: DeviceId,
    },
    /// An API token (`name`, its role per home, and the devices it may
    /// speak for there), given as the password with the username
    /// [`TOKEN_USERNAME`].
    Token {
        name: String,
        grants: Vec<Grant>,
        devices: DeviceScope,
    },
    /// No credential, admitted in open mode.
    Anonymous,
}

/// The username an API token logs in to the broker with (the token is the
/// password). Why a fixed name: what the token may do comes from the token
/// alone, and a client (a gateway, Home Assistant) then needs one secret.
pub use hearth_proto::topics::TOKEN_USERNAME;

/// Why a connection, publish or subscription was refused; its `as_str` is the
/// `reason` label of `hearth_mqtt_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRefusal {
    /// Unknown user, wrong or revoked password, or no credential outside
    /// open mode.
    Credential,
    /// A client id reserved for Hearth or for another device.
    ClientId,
    /// A publish on a topic that is not the client's own (another device's,
    /// `desired`, outside Hearth's topics), or a last will on one.
    Publish,
    /// A retained message under Hearth's prefix.
    Retain,
    /// A subscription beyond the client's own `desired` topic.
    Subscribe,
}

impl BrokerRefusal {
    pub const ALL: [BrokerRefusal; 5] = [
        BrokerRefusal::Credential,
        BrokerRefusal::ClientId,
        BrokerRefusal::Publish,
        BrokerRefusal::Retain,
        BrokerRefusal::Subscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRefusal::Credential => "credential",
            BrokerRefusal::ClientId => "client_id",
            BrokerRefusal::Publish => "publish",
            BrokerRefusal::Retain => "retain",
            BrokerRefusal::Subscribe => "subscribe",
        }
    }
}

impl BrokerClient {
    /// Whether this client may connect under `client_id`.
    pub fn may_use_client_id(&self, client_id: &str) -> Result<(), BrokerRefusal> {
        let ok = match self {
            BrokerClient::Hearth => true,
            BrokerClient::Device { device, .. } => client_id == agent_client_id(device.as_str()),
            BrokerClient::Token { .. } => {
                !client_id.starts_with(BACKEND_CLIENT_PREFIX)
                    && !client_id.starts_with(AGENT_CLIENT_PREFIX)
            }
            BrokerClient::Anonymous => !client_id.starts_with(BACKEND_CLIENT_PREFIX),
        };
        ok.then_some(()).ok_or(BrokerRefusal::ClientId)
    }

    /// Whether this client may publish on `topic` (`retain` as flagged).
    /// `ha`: Home Assistant's topics, when Hearth's bridge to it is on.
    pub fn may_publish(
        &self,
        topics: &Topics,
        ha: Option<&HomeAssistantTopics>,
        topic: &str,
        retain: bool,
    ) -> Result<(), BrokerRefusal> {
        match self {
            BrokerClient::Hearth => Ok(()),
            BrokerClient::Token {
                grants, devices, ..
            } => {
                // Why `reported` too: the gateway's bridge relays what the
                // devices behind it report having applied. Never `desired`:
                // only Hearth says what a device should do.
                let allowed = match topics.parse(topic) {
                    Ok(t) => {
                        t.channel != Channel::Desired
                            && has(grants, t.home_id, Role::Ingest)
                            && devices.covers(t.device_id)
                    }
                    Err(_) => ha.is_some_and(|ha| match ha.parse_command(topic) {
                        Ok((home, _, _)) => has(grants, home, Role::Operator),
                        Err(_) => topic == ha.birth() && has_any(grants, Role::Operator),
                    }),
                };
                match (allowed, retain) {
                    (false, _) => Err(BrokerRefusal::Publish),
                    (true, true) => Err(BrokerRefusal::Retain),
                    (true, false) => Ok(()),
                }
            }
            BrokerClient::Device { home, device } => {
                let own = topics.parse(topic).is_ok_and(|t| {
                    t.home_id == home.as_str()
                        && t.device_id == device.as_str()
                        && t.channel != Channel::Desired
                });
                match (own, retain) {
                    (false, _) => Err(BrokerRefusal::Publish),
                    (true, true) => Err(BrokerRefusal::Retain),
                    (true, false) => Ok(()),
                }
            }
            BrokerClient::Anonymous => {
                if topics
                    .parse(topic)
                    .is_ok_and(|t| t.channel == Channel::Desired)
                {
                    Err(BrokerRefusal::Publish)
                } else if retain && is_under_prefix(topics, topic) {
                    Err(BrokerRefusal::Retain)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Whether this client may subscribe to `filter`.
    pub fn may_subscribe(
        &self,
        topics: &Topics,
        ha: Option<&HomeAssistantTopics>,
        filter: &str,
    ) -> Result<(), BrokerRefusal> {
        match self {
            BrokerClient::Hearth | BrokerClient::Anonymous => Ok(()),
            BrokerClient::Token {
                grants, devices, ..
            } => {
                // Desired states: every device's (what the gateway's bridge
                // subscribes to), one home's, or one device's. What the
                // wildcards match is filtered by `may_receive`.
                let desired = match topics.parse(filter) {
                    Ok(t) => {
                        t.channel == Channel::Desired
                            && has(grants, t.home_id, Role::Ingest)
                            && devices.covers(t.device_id)
                    }
                    Err(_) => {
                        (filter == topics.all_devices(Channel::Desired)
                            && has_any(grants, Role::Ingest))
                            || grants.iter().any(|g| {
                                g.role.includes(Role::Ingest)
                                    && topics
                                        .home_devices(g.home.as_str(), Channel::Desired)
                                        .is_ok_and(|f| f == filter)
                            })
                    }
                };
                // Why every config, whatever its home: Home Assistant
                // subscribes to `{discovery}/+/+/config` and
                // `{discovery}/+/+/+/config`; `may_receive` passes on only
                // its homes' (the home is in a config's node level). States
                // and commands have the home in a level of its own: only
                // the token's homes.
                let home_assistant = ha.is_some_and(|ha| {
                    ((ha.is_config_filter(filter) || filter == ha.birth())
                        && has_any(grants, Role::Operator))
                        || ha
                            .home_of(filter)
                            .is_some_and(|home| has(grants, home, Role::Operator))
                });
                (desired || home_assistant)
                    .then_some(())
                    .ok_or(BrokerRefusal::Subscribe)
            }
            BrokerClient::Device { home, device } => {
                let own = topics
                    .device(home.as_str(), device.as_str(), Channel::Desired)
                    .is_ok_and(|desired| desired == filter);
                own.then_some(()).ok_or(BrokerRefusal::Subscribe)
            }
        }
    }
}

impl BrokerClient {
    /// Whether the broker's message on `topic` may reach this client, which
    /// subscribed to a filter matching it. Only a token can subscribe beyond
    /// its own homes (wildcards over the home level, see
    /// [`may_subscribe`](Self::may_subscribe)); the rest receive what they
    /// subscribed to.
    pub fn may_receive(
        &self,
        topics: &Topics,
        ha: Option<&HomeAssistantTopics>,
        topic: &str,
    ) -> bool {
        let BrokerClient::Token {
            grants, devices, ..
        } = self
        else {
            return true;
        };
        if let Ok(t) = topics.parse(topic) {
            return t.channel == Channel::Desired
                && has(grants, t.home_id, Role::Ingest)
                && devices.covers(t.device_id);
        }
        let Some(ha) = ha else {
            return false;
        };
        // A config of one of its homes, removed ones (empty) included; not
        // another deployment's, nor an earlier version's under the bare node.
        match ha.home_of(topic).or_else(|| ha.config_home(topic)) {
            Some(home) => has(grants, home, Role::Operator),
            None => topic == ha.birth() && has_any(grants, Role::Operator),
        }
    }
}

/// Whether an API token with `grants` acts on the broker, so gets a login
/// of its own where Hearth manages Mosquitto's: an ingest token (a
/// gateway's bridge) and, while Hearth's bridge to Home Assistant is on
/// (`home_assistant`), an operator's or admin's (Home Assistant).
pub fn token_logs_in_to_the_broker(grants: &[Grant], home_assistant: bool) -> bool {
    grants
        .iter()
        .any(|g| g.role == Role::Ingest || (home_assistant && g.role.includes(Role::Operator)))
}

/// Whether `grants` give a role in `home` that includes `need`.
fn has(grants: &[Grant], home: &str, need: Role) -> bool {
    grants
        .iter()
        .any(|g| g.home.as_str() == home && g.role.includes(need))
}

/// Whether `grants` give, in some home, a role that includes `need`.
fn has_any(grants: &[Grant], need: Role) -> bool {
    grants.iter().any(|g| g.role.includes(need))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(id: &str) -> HomeId {
        HomeId::parse(id, "home").unwrap()
    }

    fn token(grants: &[(&str, Role)]) -> BrokerClient {
        BrokerClient::Token {
            name: "t".into(),
            grants: grants
                .iter()
                .map(|(h, role)| Grant {
                    home: home(h),
                    role: *role,
                })
                .collect(),
            devices: DeviceScope::All,
        }
    }

    fn ha(topics: &Topics) -> HomeAssistantTopics {
        topics.home_assistant("homeassistant").unwrap()
    }

    fn device(d: &str) -> BrokerClient {
        BrokerClient::Device {
            home: HomeId::parse("h", "home").unwrap(),
            device: DeviceId::parse(d, "device").unwrap(),
        }
    }

    #[test]
    fn a_device_publishes_only_its_own_telemetry_report_and_status() {
        let topics = Topics::new("t/hearth").unwrap();
        let a = device("a");
        for channel in [Channel::Readings, Channel::Reported, Channel::Status] {
            let own = topics.device("h", "a", channel).unwrap();
            assert_eq!(a.may_publish(&topics, None, &own, false), Ok(()));
            assert_eq!(
                a.may_publish(&topics, None, &own, true),
                Err(BrokerRefusal::Retain)
            );
            let other = topics.device("h", "b", channel).unwrap();
            assert_eq!(
                a.may_publish(&topics, None, &other, false),
                Err(BrokerRefusal::Publish)
            );
            let other_home = topics.device("g", "a", channel).unwrap();
            assert_eq!(
                a.may_publish(&topics, None, &other_home, false),
                Err(BrokerRefusal::Publish)
            );
        }
        let desired = topics.device("h", "a", Channel::Desired).unwrap();
        assert_eq!(
            a.may_publish(&topics, None, &desired, false),
            Err(BrokerRefusal::Publish)
        );
        for outside in ["other/x", "t/hearth/replicas/r/stored", "$SYS/x", "#"] {
            assert_eq!(
                a.may_publish(&topics, None, outside, false),
                Err(BrokerRefusal::Publish),
                "{outside}"
            );
        }
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_desired_state() {
        let topics = Topics::new("t/hearth").unwrap();
        let a = device("a");
        let own = topics.device("h", "a", Channel::Desired).unwrap();
        assert_eq!(a.may_subscribe(&topics, None, &own), Ok(()));
        for filter in [
            "#",
            "t/hearth/#",
            "t/hearth/v1/h/+/desired",
            "t/hearth/v1/h/b/desired",
            "t/hearth/v1/h/a/readings",
            "$share/g/t/hearth/v1/h/a/desired",
        ] {
            assert_eq!(
                a.may_subscribe(&topics, None, filter),
                Err(BrokerRefusal::Subscribe),
                "{filter}"
            );
        }
    }

    #[test]
    fn only_hearth_publishes_desired_or_retains_under_its_prefix() {
        let topics = Topics::new("t/hearth").unwrap();
        let desired = topics.device("h", "a", Channel::Desired).unwrap();
        let anon = BrokerClient::Anonymous;
        assert_eq!(
            anon.may_publish(&topics, None, &desired, false),
            Err(BrokerRefusal::Publish)
        );
        let readings = topics.device("h", "a", Channel::Readings).unwrap();
        assert_eq!(anon.may_publish(&topics, None, &readings, false), Ok(()));
        assert_eq!(
            anon.may_publish(&topics, None, "t/hearth/ha/h/a/power/state", true),
            Err(BrokerRefusal::Retain)
        );
        assert_eq!(
            anon.may_publish(&topics, None, "t/hearthling/x", true),
            Ok(()),
            "another prefix"
        );
        assert_eq!(anon.may_subscribe(&topics, None, "#"), Ok(()));
        assert_eq!(
            BrokerClient::Hearth.may_publish(&topics, None, &desired, true),
            Ok(())
        );
    }

    #[test]
    fn backend_client_ids_are_hearths_and_agent_ids_their_devices() {
        let a = device("a");
        assert_eq!(a.may_use_client_id("hearth-agent-a"), Ok(()));
        for taken in ["hearth-agent-b", "hearth-backend-x-readings", "a"] {
            assert_eq!(
                a.may_use_client_id(taken),
                Err(BrokerRefusal::ClientId),
                "{taken}"
            );
        }
        assert_eq!(
            BrokerClient::Anonymous.may_use_client_id("hearth-backend-x-control"),
            Err(BrokerRefusal::ClientId)
        );
        assert_eq!(BrokerClient::Anonymous.may_use_client_id("tool-1"), Ok(()));
        assert_eq!(
            BrokerClient::Hearth.may_use_client_id("hearth-backend-x-control"),
            Ok(())
        );
    }

    #[test]
    fn an_ingest_token_publishes_readings_reports_and_status_of_its_homes_only() {
        let topics = Topics::new("t/hearth").unwrap();
        let ha = ha(&topics);
        let gateway = token(&[("h", Role::Ingest)]);
        for channel in [Channel::Readings, Channel::Reported, Channel::Status] {
            for device in ["a", "b"] {
                let topic = topics.device("h", device, channel).unwrap();
                assert_eq!(
                    gateway.may_publish(&topics, Some(&ha), &topic, false),
                    Ok(())
                );
                assert_eq!(
                    gateway.may_publish(&topics, Some(&ha), &topic, true),
                    Err(BrokerRefusal::Retain)
                );
            }
            let other_home = topics.device("g", "a", channel).unwrap();
            assert_eq!(
                gateway.may_publish(&topics, Some(&ha), &other_home, false),
                Err(BrokerRefusal::Publish)
            );
        }
        let desired = topics.device("h", "a", Channel::Desired).unwrap();
        for topic in [
            desired.as_str(),
            "t/hearth/ha/h/fan/power/set",
            "homeassistant/status",
            "t/hearth/replicas/r/stored",
            "other/x",
        ] {
            assert_eq!(
                gateway.may_publish(&topics, Some(&ha), topic, false),
                Err(BrokerRefusal::Publish),
                "{topic}"
            );
        }
        // A viewer's or operator's token sends no readings.
        let readings = topics.device("h", "a", Channel::Readings).unwrap();
        for role in [Role::Viewer, Role::Operator] {
            assert_eq!(
                token(&[("h", role)]).may_publish(&topics, None, &readings, false),
                Err(BrokerRefusal::Publish),
                "{role}"
            );
        }
        assert_eq!(
            token(&[("h", Role::Admin)]).may_publish(&topics, None, &readings, false),
            Ok(()),
            "admins may send readings, as over the API"
        );
    }

    #[test]
    fn an_ingest_token_reads_the_desired_states_of_its_homes_only() {
        let topics = Topics::new("t/hearth").unwrap();
        let gateway = token(&[("h", Role::Ingest)]);
        for filter in [
            topics.all_devices(Channel::Desired),
            topics.home_devices("h", Channel::Desired).unwrap(),
            topics.device("h", "a", Channel::Desired).unwrap(),
        ] {
            assert_eq!(gateway.may_subscribe(&topics, None, &filter), Ok(()));
        }
        for filter in [
            "#".to_owned(),
            "t/hearth/#".to_owned(),
            topics.home_devices("g", Channel::Desired).unwrap(),
            topics.device("g", "a", Channel::Desired).unwrap(),
            topics.all_devices(Channel::Readings),
            topics.device("h", "a", Channel::Reported).unwrap(),
            topics.all_devices_shared("g", Channel::Desired),
            "homeassistant/+/+/config".to_owned(),
        ] {
            assert_eq!(
                gateway.may_subscribe(&topics, Some(&ha(&topics)), &filter),
                Err(BrokerRefusal::Subscribe),
                "{filter}"
            );
        }
        // What `+/+/desired` brings: its homes' only.
        let own = topics.device("h", "a", Channel::Desired).unwrap();
        let other = topics.device("g", "a", Channel::Desired).unwrap();
        assert!(gateway.may_receive(&topics, None, &own));
        assert!(!gateway.may_receive(&topics, None, &other));
        let readings = topics.device("h", "a", Channel::Readings).unwrap();
        assert!(!gateway.may_receive(&topics, None, &readings));
    }

    #[test]
    fn a_gateways_token_limited_to_its_devices_speaks_for_no_other() {
        let topics = Topics::new("t/hearth").unwrap();
        let BrokerClient::Token { name, grants, .. } = token(&[("h", Role::Ingest)]) else {
            unreachable!()
        };
        let shed = DeviceId::parse("shed-1", "device_id").unwrap();
        let gateway = BrokerClient::Token {
            name,
            grants,
            devices: DeviceScope::from_list(vec![shed]),
        };
        for channel in [Channel::Readings, Channel::Reported, Channel::Status] {
            let own = topics.device("h", "shed-1", channel).unwrap();
            assert_eq!(gateway.may_publish(&topics, None, &own, false), Ok(()));
            let other = topics.device("h", "hall-1", channel).unwrap();
            assert_eq!(
                gateway.may_publish(&topics, None, &other, false),
                Err(BrokerRefusal::Publish),
                "{other}"
            );
        }
        let own = topics.device("h", "shed-1", Channel::Desired).unwrap();
        let other = topics.device("h", "hall-1", Channel::Desired).unwrap();
        assert_eq!(gateway.may_subscribe(&topics, None, &own), Ok(()));
        assert_eq!(
            gateway.may_subscribe(&topics, None, &other),
            Err(BrokerRefusal::Subscribe)
        );
        // The bridge's wildcard brings its devices' desired states only.
        assert_eq!(
            gateway.may_subscribe(&topics, None, &topics.all_devices(Channel::Desired)),
            Ok(())
        );
        assert!(gateway.may_receive(&topics, None, &own));
        assert!(!gateway.may_receive(&topics, None, &other));
    }

    #[test]
    fn an_operator_token_reaches_home_assistants_topics_of_its_homes_only() {
        let topics = Topics::new("t/hearth").unwrap();
        let ha = ha(&topics);
        let assistant = token(&[("h", Role::Operator)]);
        let command = ha.command("h", "fan", "power");
        assert_eq!(
            assistant.may_publish(&topics, Some(&ha), &command, false),
            Ok(())
        );
        assert_eq!(
            assistant.may_publish(&topics, Some(&ha), &command, true),
            Err(BrokerRefusal::Retain)
        );
        assert_eq!(
            assistant.may_publish(&topics, Some(&ha), &ha.birth(), false),
            Ok(()),
            "its birth and last will"
        );
        for topic in [
            ha.command("g", "fan", "power"),
            ha.state("h", "fan", "power"),
            ha.config("h", "fan", "h_fan"),
            topics.device("h", "fan", Channel::Desired).unwrap(),
            topics.device("h", "fan", Channel::Readings).unwrap(),
        ] {
            assert_eq!(
                assistant.may_publish(&topics, Some(&ha), &topic, false),
                Err(BrokerRefusal::Publish),
                "{topic}"
            );
        }
        assert_eq!(
            assistant.may_publish(&topics, None, &command, false),
            Err(BrokerRefusal::Publish),
            "nothing of Home Assistant's while Hearth's bridge is off"
        );

        for filter in [
            "homeassistant/+/+/config".to_owned(),
            "homeassistant/+/+/+/config".to_owned(),
            ha.birth(),
            ha.state("h", "fan", "power"),
            ha.availability("h", "fan"),
            "t/hearth/ha/h/#".to_owned(),
        ] {
            assert_eq!(
                assistant.may_subscribe(&topics, Some(&ha), &filter),
                Ok(()),
                "{filter}"
            );
        }
        for filter in [
            "#".to_owned(),
            "homeassistant/#".to_owned(),
            "t/hearth/ha/#".to_owned(),
            "t/hearth/ha/+/fan/power/state".to_owned(),
            ha.state("g", "fan", "power"),
            topics.all_devices(Channel::Desired),
        ] {
            assert_eq!(
                assistant.may_subscribe(&topics, Some(&ha), &filter),
                Err(BrokerRefusal::Subscribe),
                "{filter}"
            );
        }
        // A viewer's or a gateway's token is no Home Assistant.
        for role in [Role::Viewer, Role::Ingest] {
            let t = token(&[("h", role)]);
            assert_eq!(
                t.may_subscribe(&topics, Some(&ha), "homeassistant/+/+/config"),
                Err(BrokerRefusal::Subscribe),
                "{role}"
            );
            assert_eq!(
                t.may_publish(&topics, Some(&ha), &command, false),
                Err(BrokerRefusal::Publish),
                "{role}"
            );
        }
    }

    #[test]
    fn home_assistant_receives_the_configs_and_states_of_its_homes_only() {
        use crate::{home_assistant::configs, ActuatorState, Device, DeviceKind};

        let topics = Topics::new("t/hearth").unwrap();
        let ha = ha(&topics);
        // Homes whose configs' object ids are the same: `a_b` + `fan` and
        // `a` + `b_fan` are both `a_b_fan`; their nodes differ.
        let fan = |home_id: &str, id: &str| Device {
            id: DeviceId::parse(id, "id").unwrap(),
            home_id: home(home_id),
            kind: DeviceKind::Fan,
            name: String::new(),
            state: ActuatorState::default(),
            online: true,
            last_seen: None,
            last_command: None,
        };
        let assistant = token(&[("a", Role::Operator)]);
        for config in configs(&ha, &fan("a", "b_fan")) {
            assert!(
                assistant.may_receive(&topics, Some(&ha), &config.topic),
                "{config:?}, and its removal"
            );
        }
        for home_id in ["a_b", "c"] {
            for config in configs(&ha, &fan(home_id, "fan")) {
                assert!(
                    !assistant.may_receive(&topics, Some(&ha), &config.topic),
                    "{config:?}"
                );
            }
        }
        // An earlier version's config, of every home under the bare node.
        let shared = format!("homeassistant/fan/{}/a_fan/config", ha.node());
        assert!(!assistant.may_receive(&topics, Some(&ha), &shared));
        assert!(assistant.may_receive(&topics, Some(&ha), &ha.state("a", "fan", "power")));
        assert!(!assistant.may_receive(&topics, Some(&ha), &ha.state("c", "fan", "power")));
        assert!(assistant.may_receive(&topics, Some(&ha), &ha.birth()));
        assert!(!assistant.may_receive(&topics, None, &ha.state("a", "fan", "power")));
        let desired = topics.device("a", "fan", Channel::Desired).unwrap();
        assert!(
            !assistant.may_receive(&topics, Some(&ha), &desired),
            "no gateway"
        );
        // Other clients receive what they subscribed to.
        assert!(device("a").may_receive(&topics, Some(&ha), &desired));
    }

    #[test]
    fn gateways_and_home_assistant_get_broker_logins_scripts_do_not() {
        let grants = |role| {
            vec![Grant {
                home: home("h"),
                role,
            }]
        };
        for (role, without_ha, with_ha) in [
            (Role::Ingest, true, true),
            (Role::Operator, false, true),
            (Role::Admin, false, true),
            (Role::Viewer, false, false),
        ] {
            assert_eq!(
                token_logs_in_to_the_broker(&grants(role), false),
                without_ha,
                "{role}"
            );
            assert_eq!(
                token_logs_in_to_the_broker(&grants(role), true),
                with_ha,
                "{role}"
            );
        }
    }

    #[test]
    fn a_token_takes_neither_a_replicas_nor_a_devices_client_id() {
        let gateway = token(&[("h", Role::Ingest)]);
        for taken in ["hearth-backend-x-readings", "hearth-agent-a"] {
            assert_eq!(
                gateway.may_use_client_id(taken),
                Err(BrokerRefusal::ClientId),
                "{taken}"
            );
        }
        for free in ["hearth-gateway-cloud-00001234", "home-assistant-1"] {
            assert_eq!(gateway.may_use_client_id(free), Ok(()), "{free}");
        }
    }
}
