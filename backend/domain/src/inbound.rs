//! What a device publishes, decoded: an MQTT topic and payload become a
//! [`DeviceMessage`] (which device, and what it said) or the reason the
//! message is dropped.
//!
//! The backend's MQTT inbox runs [`decode_device_message`] on every message it
//! receives, and the fuzz targets (`fuzz/`) run the very same function. It
//! takes the topic and payload as plain data, so nothing here knows the MQTT
//! client.

use hearth_proto::{
    topics::{Channel, DeviceTopic, TopicError, Topics},
    v1::{DeviceStatus, ReadingBatch, ReportedState},
};
use prost::Message as _;

use crate::{decode_readings, DeviceId, HomeId, InvalidId};

/// Largest device payload accepted; a reading batch is a few dozen bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A message from a device: the ids its topic names, and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMessage {
    pub home_id: HomeId,
    pub device_id: DeviceId,
    pub body: MessageBody,
}

/// What a device said, by the channel it said it on.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageBody {
    Readings(ReadingBatch),
    Reported(ReportedState),
    Status(DeviceStatus),
}

/// Why a device's message is dropped; the text is logged with its topic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Id(#[from] InvalidId),
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("payload is not a hearth.v1.{message}: {source}")]
    NotA {
        message: &'static str,
        source: prost::DecodeError,
    },
    /// A readings payload [`decode_readings`] refused.
    #[error("{0}")]
    Readings(String),
    #[error("the backend does not take desired states from devices")]
    DesiredFromDevice,
}

/// Decodes a message a device published on `topic`, under this deployment's
/// `topics`, or says why it is dropped.
pub fn decode_device_message(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
) -> Result<DeviceMessage, Refused> {
    let DeviceTopic {
        home_id,
        device_id,
        channel,
    } = topics.parse(topic)?;
    let home_id = HomeId::parse(home_id, "topic home")?;
    let device_id = DeviceId::parse(device_id, "topic device")?;
    if payload.len() > MAX_PAYLOAD {
        return Err(Refused::TooLarge(payload.len()));
    }
    let not_a = |message: &'static str| move |source| Refused::NotA { message, source };
    let body = match channel {
        Channel::Readings => MessageBody::Readings(
            decode_readings(&home_id, &device_id, payload).map_err(Refused::Readings)?,
        ),
        Channel::Reported => {
            MessageBody::Reported(ReportedState::decode(payload).map_err(not_a("ReportedState"))?)
        }
        Channel::Status => {
            MessageBody::Status(DeviceStatus::decode(payload).map_err(not_a("DeviceStatus"))?)
        }
        Channel::Desired => return Err(Refused::DesiredFromDevice),
    };
    Ok(DeviceMessage {
        home_id,
        device_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Reading;

    use super::*;

    fn topic(channel: &str) -> String {
        format!("hearth/v1/home-1/sensor-1/{channel}")
    }

    fn decode(topic: &str, payload: &[u8]) -> Result<DeviceMessage, Refused> {
        decode_device_message(&Topics::default(), topic, payload)
    }

    fn batch(device_id: &str) -> ReadingBatch {
        ReadingBatch {
            device_id: device_id.into(),
            seq: 7,
            readings: vec![Reading {
                metric: 1,
                value: 21.5,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn decodes_a_reading_batch_with_the_ids_of_its_topic() {
        let message = decode(&topic("readings"), &batch("sensor-1").encode_to_vec()).unwrap();
        assert_eq!(message.home_id.as_str(), "home-1");
        assert_eq!(message.device_id.as_str(), "sensor-1");
        assert_eq!(message.body, MessageBody::Readings(batch("sensor-1")));
    }

    #[test]
    fn decodes_reported_states_and_statuses() {
        let state = ReportedState {
            applied_version: 3,
            on: true,
            ..Default::default()
        };
        let status = DeviceStatus {
            online: true,
            ..Default::default()
        };
        assert_eq!(
            decode(&topic("reported"), &state.encode_to_vec())
                .unwrap()
                .body,
            MessageBody::Reported(state)
        );
        assert_eq!(
            decode(&topic("status"), &status.encode_to_vec())
                .unwrap()
                .body,
            MessageBody::Status(status)
        );
    }

    #[test]
    fn refuses_a_topic_of_another_deployment() {
        let refused = decode("other/v1/home-1/sensor-1/readings", &[]).unwrap_err();
        assert_eq!(refused, Refused::Topic(TopicError::OtherPrefix));
    }

    #[test]
    fn refuses_a_payload_over_the_limit_whatever_it_holds() {
        let refused = decode(&topic("readings"), &vec![0; MAX_PAYLOAD + 1]).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "payload of 65537 bytes is over the 65536-byte limit"
        );
    }

    #[test]
    fn refuses_a_batch_that_names_another_device_than_its_topic() {
        let refused = decode(&topic("readings"), &batch("sensor-2").encode_to_vec()).unwrap_err();
        assert!(matches!(refused, Refused::Readings(_)), "{refused}");
    }

    #[test]
    fn refuses_a_payload_that_is_not_the_channels_message() {
        let refused = decode(&topic("status"), &[0xff]).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("payload is not a hearth.v1.DeviceStatus: "),
            "{refused}"
        );
    }

    #[test]
    fn refuses_desired_states_from_devices() {
        assert_eq!(
            decode(&topic("desired"), &[]).unwrap_err(),
            Refused::DesiredFromDevice
        );
    }
}
