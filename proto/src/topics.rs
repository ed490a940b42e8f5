//! The MQTT topic scheme. Every topic Hearth publishes or subscribes to is
//! built here and every received topic is parsed here.
//!
//! ```text
//! {prefix}/v1/{home_id}/{device_id}/{channel}
//! ```
//!
//! | channel    | direction        | payload (hearth.v1)       |
//! |------------|------------------|---------------------------|
//! | `readings` | device → backend | `ReadingBatch`            |
//! | `desired`  | backend → device | `DesiredState`            |
//! | `reported` | device → backend | `ReportedState`           |
//! | `status`   | device → backend | `DeviceStatus` (last will)|
//!
//! The prefix (default `hearth`) is one or more levels; deployments sharing a
//! broker and tests running in parallel each use their own.

use crate::ids::{check_id, IdError};

/// Version level of the scheme; bumped if the layout ever changes.
const VERSION_LEVEL: &str = "v1";

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "hearth";

/// What a message on a device topic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Readings,
    Desired,
    Reported,
    Status,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Readings,
        Channel::Desired,
        Channel::Reported,
        Channel::Status,
    ];

    /// The topic level naming this channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Readings => "readings",
            Channel::Desired => "desired",
            Channel::Reported => "reported",
            Channel::Status => "status",
        }
    }

    fn from_level(level: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == level)
    }
}

/// A parsed device topic, borrowing from the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTopic<'t> {
    pub home_id: &'t str,
    pub device_id: &'t str,
    pub channel: Channel,
}

/// Why a topic or prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// The prefix is empty, has an empty level, a wildcard or starts with `$`.
    BadPrefix(String),
    /// The topic does not start with this deployment's `{prefix}/v1/`.
    OtherPrefix,
    /// Not exactly `{home}/{device}/{channel}` after the prefix.
    WrongShape,
    BadHomeId(IdError),
    BadDeviceId(IdError),
    UnknownChannel(String),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::BadPrefix(p) => write!(
                f,
                "topic prefix {p:?} is invalid: it needs non-empty levels of A-Z a-z 0-9 _ - and no leading $"
            ),
            TopicError::OtherPrefix => write!(f, "topic is outside this deployment's prefix"),
            TopicError::WrongShape => write!(f, "topic is not {{prefix}}/v1/{{home}}/{{device}}/{{channel}}"),
            TopicError::BadHomeId(e) => write!(f, "home id in topic {e}"),
            TopicError::BadDeviceId(e) => write!(f, "device id in topic {e}"),
            TopicError::UnknownChannel(c) => write!(f, "unknown channel {c:?}"),
        }
    }
}

impl std::error::Error for TopicError {}

/// The topic scheme under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `{prefix}/v1/`, kept whole so parsing is one `strip_prefix`.
    root: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

/// What a backend replica tells the others (see `replicas.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// Readings a commit stored (`ReplicaCommit`).
    Stored,
    /// A device whose stored state changed (`ReplicaDeviceChanged`).
    Devices,
}

impl News {
    pub const ALL: [News; 2] = [News::Stored, News::Devices];

    pub fn as_str(self) -> &'static str {
        match self {
            News::Stored => "stored",
            News::Devices => "devices",
        }
    }
}

/// Mosquitto's count of messages it dropped, for every client together:
/// past a session's queue limit it drops silently, and this is the only trace.
pub const BROKER_DROPPED: &str = "$SYS/broker/publish/messages/dropped";

/// The level under the prefix where replicas talk; outside `v1/`, so no
/// device filter (`v1/+/+/…`) matches it.
const REPLICAS_LEVEL: &str = "replicas";

impl Topics {
    /// Topics under `prefix`, e.g. `hearth` or `test-1234/hearth`.
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        let valid = !prefix.is_empty()
            && !prefix.starts_with('$')
            && prefix.split('/').all(|level| check_id(level).is_ok());
        if !valid {
            return Err(TopicError::BadPrefix(prefix.to_owned()));
        }
        Ok(Self {
            root: format!("{prefix}/{VERSION_LEVEL}/"),
        })
    }

    /// The prefix these topics live under.
    pub fn prefix(&self) -> &str {
        &self.root[..self.root.len() - VERSION_LEVEL.len() - 2]
    }

    /// The topic of one device's channel. Fails if an id is not a valid id.
    pub fn device(
        &self,
        home_id: &str,
        device_id: &str,
        channel: Channel,
    ) -> Result<String, TopicError> {
        check_id(home_id).map_err(TopicError::BadHomeId)?;
        check_id(device_id).map_err(TopicError::BadDeviceId)?;
        Ok(format!(
            "{}{home_id}/{device_id}/{}",
            self.root,
            channel.as_str()
        ))
    }

    /// Filter matching `channel` of every device of every home.
    pub fn all_devices(&self, channel: Channel) -> String {
        format!("{}+/+/{}", self.root, channel.as_str())
    }

    /// Filter matching `channel` of every device of one home. Fails if the
    /// home id is not a valid id.
    pub fn home_devices(&self, home_id: &str, channel: Channel) -> Result<String, TopicError> {
        check_id(home_id).map_err(TopicError::BadHomeId)?;
        Ok(format!("{}{home_id}/+/{}", self.root, channel.as_str()))
    }

    /// Like [`all_devices`](Self::all_devices), as an MQTT 5 / Mosquitto shared
    /// subscription: each message goes to one member of `group`.
    pub fn all_devices_shared(&self, group: &str, channel: Channel) -> String {
        format!("$share/{group}/{}", self.all_devices(channel))
    }

    /// The topic where `replica` publishes `news`. Fails if the replica's
    /// name is not a valid topic level.
    pub fn replica_news(&self, replica: &str, news: News) -> Result<String, TopicError> {
        if replica.is_empty() || replica.contains(['/', '+', '#']) {
            return Err(TopicError::WrongShape);
        }
        Ok(format!(
            "{}/{REPLICAS_LEVEL}/{replica}/{}",
            self.prefix(),
            news.as_str()
        ))
    }

    /// Filter matching `news` of every replica.
    pub fn all_replica_news(&self, news: News) -> String {
        format!("{}/{REPLICAS_LEVEL}/+/{}", self.prefix(), news.as_str())
    }

    /// The replica and kind of news of a topic from
    /// [`replica_news`](Self::replica_news), or `None`.
    pub fn parse_replica_news<'t>(&self, topic: &'t str) -> Option<(&'t str, News)> {
        let rest = topic
            .strip_prefix(self.prefix())?
            .strip_prefix('/')?
            .strip_prefix(REPLICAS_LEVEL)?
            .strip_prefix('/')?;
        let (replica, news) = rest.split_once('/')?;
        let news = News::ALL.into_iter().find(|n| n.as_str() == news)?;
        (!replica.is_empty()).then_some((replica, news))
    }

    /// Parses a received topic.
    pub fn parse<'t>(&self, topic: &'t str) -> Result<DeviceTopic<'t>, TopicError> {
        let rest = topic
            .strip_prefix(self.root.as_str())
            .ok_or(TopicError::OtherPrefix)?;
        let mut levels = rest.split('/');
        let (Some(home_id), Some(device_id), Some(channel), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(TopicError::WrongShape);
        };
        check_id(home_id).map_err(TopicError::BadHomeId)?;
        check_id(device_id).map_err(TopicError::BadDeviceId)?;
        let channel = Channel::from_level(channel)
            .ok_or_else(|| TopicError::UnknownChannel(channel.to_owned()))?;
        Ok(DeviceTopic {
            home_id,
            device_id,
            channel,
        })
    }
}

/// Every MQTT client id of a backend replica starts with this. Why it is
/// reserved: a broker hands a client id to whoever connects with it last, so
/// a device taking a replica's id would cut that replica off; brokers in
/// front of Hearth refuse it to anyone but Hearth.
pub const BACKEND_CLIENT_PREFIX: &str = "hearth-backend-";

/// The MQTT client id of device `device_id`'s agent. A device with its own
/// credential must connect with exactly this id, so it can take over neither
/// a replica's session nor another device's.
pub fn agent_client_id(device_id: &str) -> String {
    format!("{AGENT_CLIENT_PREFIX}{device_id}")
}

/// The MQTT username of a client logging in with a Hearth API token (the
/// token is the password): a LAN gateway's bridge, Home Assistant.
pub const TOKEN_USERNAME: &str = "token";

/// The MQTT username naming one API token, `token.{name}`: what a token
/// logs in with on Mosquitto, where each login is a client of its own (the
/// embedded broker takes it too). Why a dot: no device id holds one, so it
/// is no device's username.
pub fn token_username(name: &str) -> String {
    format!("{TOKEN_USERNAME}.{name}")
}

/// The token's name in a [`token_username`], if `username` is one.
pub fn token_of_username(username: &str) -> Option<&str> {
    username
        .strip_prefix(TOKEN_USERNAME)?
        .strip_prefix('.')
        .filter(|name| !name.is_empty())
}

/// The MQTT client id a token's login uses on Mosquitto, where Hearth
/// fixes it: a client free to pick its id could take over a replica's
/// session.
pub fn token_client_id(name: &str) -> String {
    format!("hearth-token-{name}")
}

/// Every device agent's MQTT client id starts with this
/// ([`agent_client_id`]); only the device itself may use its id.
pub const AGENT_CLIENT_PREFIX: &str = "hearth-agent-";

/// Whether `filter` (a topic or a subscription filter) lies in the part of
/// the tree this deployment owns (`{prefix}/…`), where only Hearth may
/// retain messages.
pub fn is_under_prefix(topics: &Topics, filter: &str) -> bool {
    filter
        .strip_prefix(topics.prefix())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The level under the prefix where Hearth's Home Assistant entities live;
/// outside `v1/`, so no device filter matches it.
const HOME_ASSISTANT_LEVEL: &str = "ha";

/// Home Assistant's default discovery prefix.
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";

/// The topics of Home Assistant's MQTT discovery for one Hearth deployment:
///
/// ```text
/// {discovery}/{component}/{node}_{home}/{object_id}/config   discovery config (retained JSON)
/// {prefix}/ha/{home}/{device}/availability                   online | offline (retained)
/// {prefix}/ha/{home}/{device}/{entity}/state                 the entity's state (retained)
/// {prefix}/ha/{home}/{device}/{entity}/set                   Home Assistant's command
/// ```
///
/// `node` is the topic prefix with `/` as `_` (`hearth`), so each deployment
/// sharing a broker and discovery prefix has its own configs, and can find
/// and remove the ones it no longer wants. The home is in the node level
/// (`hearth_{home}`) so a broker's topic rules can give one home's configs
/// to one login: a level is the finest thing Mosquitto's ACLs match, and
/// the object id (`{home}_{device}`) cannot be split when ids hold `_`.
/// Configs under the bare node are an earlier version's, which shared one
/// node among homes ([`is_config`](HomeAssistantTopics::is_config) still
/// finds them, so the bridge clears them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistantTopics {
    discovery: String,
    node: String,
    /// `{prefix}/ha/`.
    root: String,
}

impl Topics {
    /// Home Assistant's topics for this deployment, discovery under
    /// `discovery_prefix` (e.g. `homeassistant`).
    pub fn home_assistant(
        &self,
        discovery_prefix: &str,
    ) -> Result<HomeAssistantTopics, TopicError> {
        let discovery = Topics::new(discovery_prefix)?;
        Ok(HomeAssistantTopics {
            discovery: discovery.prefix().to_owned(),
            node: self.prefix().replace('/', "_"),
            root: format!("{}/{HOME_ASSISTANT_LEVEL}/", self.prefix()),
        })
    }
}

impl HomeAssistantTopics {
    /// This deployment's node id in discovery topics.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node id of `home`'s configs: `{node}_{home}`.
    pub fn home_node(&self, home_id: &str) -> String {
        format!("{}_{home_id}", self.node)
    }

    /// Where the config of `home`'s entity `object_id` of `component`
    /// (`sensor`, `fan`, `light`, `select`) is published.
    pub fn config(&self, home_id: &str, component: &str, object_id: &str) -> String {
        format!(
            "{}/{component}/{}/{object_id}/config",
            self.discovery,
            self.home_node(home_id)
        )
    }

    /// Filter matching every config of `home`, whatever the component.
    pub fn home_configs(&self, home_id: &str) -> String {
        format!("{}/+/{}/+/config", self.discovery, self.home_node(home_id))
    }

    /// What Home Assistant subscribes to for discovery:
    /// `{discovery}/+/+/config` and `{discovery}/+/+/+/config`.
    pub fn discovery_filters(&self) -> [String; 2] {
        [
            format!("{}/+/+/config", self.discovery),
            format!("{}/+/+/+/config", self.discovery),
        ]
    }

    /// Where Home Assistant announces itself (its birth and last-will
    /// message, `online` / `offline`): `{discovery}/status`, its default.
    pub fn birth(&self) -> String {
        format!("{}/status", self.discovery)
    }

    /// Whether `filter` (a topic or a subscription filter) matches nothing
    /// but discovery configs: `{discovery}/{component}/[{node}/]{object}/config`,
    /// each level between an id or `+`. What Home Assistant subscribes to
    /// (`{discovery}/+/+/config`, `{discovery}/+/+/+/config`), or narrower.
    pub fn is_config_filter(&self, filter: &str) -> bool {
        let Some(levels) = self.discovery_levels(filter) else {
            return false;
        };
        matches!(levels.len(), 3 | 4)
            && levels.last() == Some(&"config")
            && levels[..levels.len() - 1]
                .iter()
                .all(|l| *l == "+" || check_id(l).is_ok())
    }

    /// The home of a topic or filter under `{prefix}/ha/{home}/`, if that
    /// level is an id (not a wildcard).
    pub fn home_of<'t>(&self, filter: &'t str) -> Option<&'t str> {
        let (home, _) = filter.strip_prefix(self.root.as_str())?.split_once('/')?;
        check_id(home).is_ok().then_some(home)
    }

    /// Filter matching every discovery config with a node, this
    /// deployment's among them (whose levels say which: see
    /// [`config_home`](Self::config_home)).
    pub fn all_configs(&self) -> String {
        format!("{}/+/+/+/config", self.discovery)
    }

    /// The home of one of this deployment's config topics
    /// (`{discovery}/{component}/{node}_{home}/{object}/config`). Another
    /// deployment whose prefix extends this one's (`hearth/x` beside
    /// `hearth`) has nodes of the same shape; what tells them apart is the
    /// config's payload (see `config_home` in the domain's Home Assistant).
    pub fn config_home<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let node = self.config_node(topic)?;
        let home = node.strip_prefix(self.node.as_str())?.strip_prefix('_')?;
        check_id(home).is_ok().then_some(home)
    }

    /// Whether `topic` is one of this deployment's configs: of a home, or
    /// under the bare node, where an earlier version put every home's.
    pub fn is_config(&self, topic: &str) -> bool {
        self.config_node(topic) == Some(self.node.as_str()) || self.config_home(topic).is_some()
    }

    /// The node level of a config topic `{discovery}/{component}/{node}/{object}/config`.
    fn config_node<'t>(&self, topic: &'t str) -> Option<&'t str> {
        match self.discovery_levels(topic)?.as_slice() {
            [component, node, object, "config"]
                if check_id(component).is_ok() && check_id(object).is_ok() =>
            {
                Some(node)
            }
            _ => None,
        }
    }

    /// The levels of a topic or filter under `{discovery}/`.
    fn discovery_levels<'t>(&self, topic: &'t str) -> Option<Vec<&'t str>> {
        let rest = topic
            .strip_prefix(self.discovery.as_str())?
            .strip_prefix('/')?;
        Some(rest.split('/').collect())
    }

    /// Where a device's availability is published. Ids must be valid ids.
    pub fn availability(&self, home_id: &str, device_id: &str) -> String {
        format!("{}{home_id}/{device_id}/availability", self.root)
    }

    /// Where the state of a device's `entity` is published.
    pub fn state(&self, home_id: &str, device_id: &str, entity: &str) -> String {
        format!("{}{home_id}/{device_id}/{entity}/state", self.root)
    }

    /// Where Home Assistant sends commands for a device's `entity`.
    pub fn command(&self, home_id: &str, device_id: &str, entity: &str) -> String {
        format!("{}{home_id}/{device_id}/{entity}/set", self.root)
    }

    /// Filter matching every topic of `home`'s entities: availability,
    /// states and commands.
    pub fn home_entities(&self, home_id: &str) -> String {
        format!("{}{home_id}/#", self.root)
    }

    /// Filter matching every command topic of `home`'s entities.
    pub fn home_commands(&self, home_id: &str) -> String {
        format!("{}{home_id}/+/+/set", self.root)
    }

    /// Filter matching every command topic.
    pub fn all_commands(&self) -> String {
        format!("{}+/+/+/set", self.root)
    }

    /// `(home_id, device_id, entity)` of a command topic.
    pub fn parse_command<'t>(
        &self,
        topic: &'t str,
    ) -> Result<(&'t str, &'t str, &'t str), TopicError> {
        let rest = topic
            .strip_prefix(self.root.as_str())
            .ok_or(TopicError::OtherPrefix)?;
        let levels: Vec<&str> = rest.split('/').collect();
        let [home_id, device_id, entity, "set"] = levels.as_slice() else {
            return Err(TopicError::WrongShape);
        };
        check_id(home_id).map_err(TopicError::BadHomeId)?;
        check_id(device_id).map_err(TopicError::BadDeviceId)?;
        check_id(entity).map_err(|_| TopicError::UnknownChannel((*entity).to_owned()))?;
        Ok((home_id, device_id, entity))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replica_news_topics_round_trip_and_stay_out_of_the_device_tree() {
        let topics = Topics::new("t1/hearth").unwrap();
        let topic = topics.replica_news("hearth-0", News::Stored).unwrap();
        assert_eq!(topic, "t1/hearth/replicas/hearth-0/stored");
        assert_eq!(
            topics.parse_replica_news(&topic),
            Some(("hearth-0", News::Stored))
        );
        assert_eq!(
            topics.all_replica_news(News::Devices),
            "t1/hearth/replicas/+/devices"
        );
        assert!(topics.parse(&topic).is_err(), "not a device topic");
        assert_eq!(topics.parse_replica_news("t1/hearth/v1/h/d/readings"), None);
        assert_eq!(
            topics.parse_replica_news("t1/hearth/replicas/x/other"),
            None
        );
        assert!(topics.replica_news("a/b", News::Stored).is_err());
    }

    use super::*;

    #[test]
    fn a_token_username_names_its_token() {
        assert_eq!(token_username("lan-gateway"), "token.lan-gateway");
        assert_eq!(token_of_username("token.lan-gateway"), Some("lan-gateway"));
        for not_one in ["token", "token.", "tokenx.a", "sensor-1"] {
            assert_eq!(token_of_username(not_one), None, "{not_one}");
        }
        assert_eq!(token_client_id("lan-gateway"), "hearth-token-lan-gateway");
    }

    #[test]
    fn builds_and_parses_every_channel() {
        let topics = Topics::new("t-42/hearth").unwrap();
        for channel in Channel::ALL {
            let topic = topics.device("home-1", "fan_2", channel).unwrap();
            assert_eq!(
                topic,
                format!("t-42/hearth/v1/home-1/fan_2/{}", channel.as_str())
            );
            assert_eq!(
                topics.parse(&topic).unwrap(),
                DeviceTopic {
                    home_id: "home-1",
                    device_id: "fan_2",
                    channel
                }
            );
        }
        assert_eq!(topics.prefix(), "t-42/hearth");
    }

    #[test]
    fn subscription_filters_cover_device_topics() {
        let topics = Topics::default();
        assert_eq!(
            topics.all_devices(Channel::Readings),
            "hearth/v1/+/+/readings"
        );
        assert_eq!(
            topics.home_devices("h-1", Channel::Desired).unwrap(),
            "hearth/v1/h-1/+/desired"
        );
        assert!(topics.home_devices("+", Channel::Desired).is_err());
        assert_eq!(
            topics.all_devices_shared("ingest", Channel::Status),
            "$share/ingest/hearth/v1/+/+/status"
        );
    }

    #[test]
    fn rejects_topics_of_other_prefixes_and_shapes() {
        let topics = Topics::default();
        assert_eq!(
            topics.parse("other/v1/h/d/readings"),
            Err(TopicError::OtherPrefix)
        );
        assert_eq!(
            topics.parse("hearth/v2/h/d/readings"),
            Err(TopicError::OtherPrefix)
        );
        assert_eq!(topics.parse("hearth/v1/h/d"), Err(TopicError::WrongShape));
        assert_eq!(
            topics.parse("hearth/v1/h/d/readings/extra"),
            Err(TopicError::WrongShape)
        );
        assert_eq!(
            topics.parse("hearth/v1//d/readings"),
            Err(TopicError::BadHomeId(IdError::Empty))
        );
        assert_eq!(
            topics.parse("hearth/v1/h/d$/readings"),
            Err(TopicError::BadDeviceId(IdError::BadChar('$')))
        );
        assert_eq!(
            topics.parse("hearth/v1/h/d/commands"),
            Err(TopicError::UnknownChannel("commands".into()))
        );
    }

    #[test]
    fn refuses_to_build_topics_from_bad_ids() {
        let topics = Topics::default();
        assert_eq!(
            topics.device("a/b", "d", Channel::Desired),
            Err(TopicError::BadHomeId(IdError::BadChar('/')))
        );
        assert_eq!(
            topics.device("h", "#", Channel::Desired),
            Err(TopicError::BadDeviceId(IdError::BadChar('#')))
        );
    }

    #[test]
    fn rejects_bad_prefixes() {
        for prefix in [
            "", "/hearth", "hearth/", "a//b", "$SYS", "hearth/+", "hearth/#",
        ] {
            assert!(
                matches!(Topics::new(prefix), Err(TopicError::BadPrefix(_))),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn home_assistant_topics_are_per_deployment_and_round_trip() {
        let ha = Topics::new("t-1/hearth")
            .unwrap()
            .home_assistant("homeassistant")
            .unwrap();
        assert_eq!(ha.node(), "t-1_hearth");
        let config = ha.config("home", "sensor", "home_s1_temperature_celsius");
        assert_eq!(
            config,
            "homeassistant/sensor/t-1_hearth_home/home_s1_temperature_celsius/config"
        );
        assert!(ha.is_config(&config));
        assert_eq!(ha.config_home(&config), Some("home"));
        // Homes `a` and `a_b` have configs a topic rule can tell apart.
        assert_eq!(
            ha.home_configs("a_b"),
            "homeassistant/+/t-1_hearth_a_b/+/config"
        );
        assert_eq!(
            ha.config_home(&ha.config("a_b", "fan", "a_b_fan")),
            Some("a_b")
        );
        // An earlier version's config under the bare node: Hearth's, of no home.
        let shared = "homeassistant/fan/t-1_hearth/home_fan/config";
        assert!(ha.is_config(shared));
        assert_eq!(ha.config_home(shared), None);
        for other in [
            "homeassistant/sensor/other/x/config",
            "homeassistant/sensor/other_home/x/config",
            "homeassistant/sensor/t-1_hearth/x/state",
            "homeassistant/sensor/t-1_hearthx/x/config",
            "homeassistant/sensor/t-1_hearth_/x/config",
            "homeassistant/t-1_hearth_home/x/config",
        ] {
            assert!(!ha.is_config(other), "{other}");
            assert_eq!(ha.config_home(other), None, "{other}");
        }
        assert_eq!(ha.all_configs(), "homeassistant/+/+/+/config");
        assert_eq!(
            ha.discovery_filters(),
            ["homeassistant/+/+/config", "homeassistant/+/+/+/config"]
        );
        assert_eq!(
            ha.availability("home", "fan"),
            "t-1/hearth/ha/home/fan/availability"
        );
        assert_eq!(
            ha.state("home", "fan", "power"),
            "t-1/hearth/ha/home/fan/power/state"
        );
        let command = ha.command("home", "fan", "power");
        assert_eq!(command, "t-1/hearth/ha/home/fan/power/set");
        assert_eq!(ha.parse_command(&command), Ok(("home", "fan", "power")));
        assert_eq!(ha.all_commands(), "t-1/hearth/ha/+/+/+/set");
        assert_eq!(ha.home_commands("h"), "t-1/hearth/ha/h/+/+/set");
        assert_eq!(ha.home_entities("h"), "t-1/hearth/ha/h/#");
        assert_eq!(ha.home_of(&ha.home_entities("h")), Some("h"));
    }

    #[test]
    fn home_assistant_filters_say_what_they_reach() {
        let ha = Topics::new("t/hearth")
            .unwrap()
            .home_assistant("homeassistant")
            .unwrap();
        assert_eq!(ha.birth(), "homeassistant/status");
        for config in [
            "homeassistant/+/+/config",
            "homeassistant/+/+/+/config",
            "homeassistant/fan/t_hearth/home_fan/config",
        ] {
            assert!(ha.is_config_filter(config), "{config}");
        }
        for other in [
            "homeassistant/#",
            "homeassistant/+/+/+/+/config",
            "homeassistant/status",
            "homeassistant/+/#",
            "homeassistant/fan/x/state",
            "other/fan/x/config",
            "homeassistantx/fan/x/config",
        ] {
            assert!(!ha.is_config_filter(other), "{other}");
        }
        assert_eq!(
            ha.home_of(&ha.command("home", "fan", "power")),
            Some("home")
        );
        assert_eq!(ha.home_of(&ha.availability("h-2", "fan")), Some("h-2"));
        assert_eq!(ha.home_of("t/hearth/ha/home/#"), Some("home"));
        assert_eq!(ha.home_of("t/hearth/ha/+/fan/power/state"), None);
        assert_eq!(ha.home_of("t/hearth/ha/#"), None);
        assert_eq!(ha.home_of("t/hearth/v1/home/fan/desired"), None);
    }

    #[test]
    fn home_assistant_refuses_bad_prefixes_and_command_topics() {
        let topics = Topics::default();
        for bad in ["", "home/+", "$SYS", "a//b"] {
            assert!(topics.home_assistant(bad).is_err(), "{bad:?}");
        }
        let ha = topics.home_assistant("ha-test/homeassistant").unwrap();
        assert_eq!(
            ha.config("h", "fan", "h_f"),
            "ha-test/homeassistant/fan/hearth_h/h_f/config"
        );
        assert_eq!(
            ha.parse_command("other/ha/h/f/power/set"),
            Err(TopicError::OtherPrefix)
        );
        assert_eq!(
            ha.parse_command("hearth/ha/h/f/power/state"),
            Err(TopicError::WrongShape)
        );
        assert_eq!(
            ha.parse_command("hearth/ha/h/f/set"),
            Err(TopicError::WrongShape)
        );
        assert!(ha.parse_command("hearth/ha/h/f$/power/set").is_err());
    }
}
