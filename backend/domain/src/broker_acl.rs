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
//! - **Anonymous**, only while Hearth is in open mode (no user yet, loopback
//!   only: whoever reaches the port owns the machine anyway): anything but
//!   what only Hearth may do, i.e. publishing `desired` and retaining under
//!   Hearth's prefix.
//!
//! No client but Hearth may use a client id starting with
//! [`BACKEND_CLIENT_PREFIX`].

use hearth_proto::topics::{
    agent_client_id, is_under_prefix, Channel, Topics, BACKEND_CLIENT_PREFIX,
};

use crate::ids::{DeviceId, HomeId};

/// Who a broker connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerClient {
    Hearth,
    Device {
        home: HomeId,
        device: DeviceId,
    },
    /// No credential, admitted in open mode.
    Anonymous,
}

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
            BrokerClient::Anonymous => !client_id.starts_with(BACKEND_CLIENT_PREFIX),
        };
        ok.then_some(()).ok_or(BrokerRefusal::ClientId)
    }

    /// Whether this client may publish on `topic` (`retain` as flagged).
    pub fn may_publish(
        &self,
        topics: &Topics,
        topic: &str,
        retain: bool,
    ) -> Result<(), BrokerRefusal> {
        match self {
            BrokerClient::Hearth => Ok(()),
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
    pub fn may_subscribe(&self, topics: &Topics, filter: &str) -> Result<(), BrokerRefusal> {
        match self {
            BrokerClient::Hearth | BrokerClient::Anonymous => Ok(()),
            BrokerClient::Device { home, device } => {
                let own = topics
                    .device(home.as_str(), device.as_str(), Channel::Desired)
                    .is_ok_and(|desired| desired == filter);
                own.then_some(()).ok_or(BrokerRefusal::Subscribe)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(a.may_publish(&topics, &own, false), Ok(()));
            assert_eq!(
                a.may_publish(&topics, &own, true),
                Err(BrokerRefusal::Retain)
            );
            let other = topics.device("h", "b", channel).unwrap();
            assert_eq!(
                a.may_publish(&topics, &other, false),
                Err(BrokerRefusal::Publish)
            );
            let other_home = topics.device("g", "a", channel).unwrap();
            assert_eq!(
                a.may_publish(&topics, &other_home, false),
                Err(BrokerRefusal::Publish)
            );
        }
        let desired = topics.device("h", "a", Channel::Desired).unwrap();
        assert_eq!(
            a.may_publish(&topics, &desired, false),
            Err(BrokerRefusal::Publish)
        );
        for outside in ["other/x", "t/hearth/replicas/r/stored", "$SYS/x", "#"] {
            assert_eq!(
                a.may_publish(&topics, outside, false),
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
        assert_eq!(a.may_subscribe(&topics, &own), Ok(()));
        for filter in [
            "#",
            "t/hearth/#",
            "t/hearth/v1/h/+/desired",
            "t/hearth/v1/h/b/desired",
            "t/hearth/v1/h/a/readings",
            "$share/g/t/hearth/v1/h/a/desired",
        ] {
            assert_eq!(
                a.may_subscribe(&topics, filter),
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
            anon.may_publish(&topics, &desired, false),
            Err(BrokerRefusal::Publish)
        );
        let readings = topics.device("h", "a", Channel::Readings).unwrap();
        assert_eq!(anon.may_publish(&topics, &readings, false), Ok(()));
        assert_eq!(
            anon.may_publish(&topics, "t/hearth/ha/h/a/power/state", true),
            Err(BrokerRefusal::Retain)
        );
        assert_eq!(
            anon.may_publish(&topics, "t/hearthling/x", true),
            Ok(()),
            "another prefix"
        );
        assert_eq!(anon.may_subscribe(&topics, "#"), Ok(()));
        assert_eq!(
            BrokerClient::Hearth.may_publish(&topics, &desired, true),
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
}
