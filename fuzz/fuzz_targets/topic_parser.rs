//! Fuzz target: the MQTT topic scheme, `hearth_proto::topics`.
//!
//! Invariants: nothing panics; a topic built from valid ids parses back to
//! those ids and channel; whatever parses rebuilds to the very same string
//! (one spelling per topic); an accepted prefix is given back by `prefix()`;
//! ids are accepted exactly when `check_id` accepts them; subscription
//! filters and other deployments' topics never parse as this deployment's.
#![no_main]

use arbitrary::Arbitrary;
use hearth_proto::{
    ids::check_id,
    topics::{Channel, DeviceTopic, Topics},
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    prefix: &'a str,
    home: &'a str,
    device: &'a str,
    channel: u8,
    group: &'a str,
    topic: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let channel = Channel::ALL[usize::from(input.channel) % Channel::ALL.len()];
    let topics = match Topics::new(input.prefix) {
        Ok(topics) => {
            assert_eq!(topics.prefix(), input.prefix);
            assert!(!input.prefix.starts_with('$'));
            assert!(input.prefix.split('/').all(|level| check_id(level).is_ok()));
            topics
        }
        // Why fall back: a valid prefix lets the other inputs reach parsing.
        Err(_) => Topics::default(),
    };
    let other = Topics::new(if topics.prefix() == "a" { "b" } else { "a" }).expect("valid prefix");

    // build → parse
    let ids_valid = check_id(input.home).is_ok() && check_id(input.device).is_ok();
    match topics.device(input.home, input.device, channel) {
        Ok(topic) => {
            assert!(ids_valid);
            assert_eq!(
                topics.parse(&topic),
                Ok(DeviceTopic {
                    home_id: input.home,
                    device_id: input.device,
                    channel,
                })
            );
            assert!(
                other.parse(&topic).is_err(),
                "{topic} parsed under {other:?}"
            );
        }
        Err(_) => assert!(!ids_valid),
    }

    // parse → build, for the raw input and for it under this prefix
    for topic in [
        input.topic.to_owned(),
        format!("{}/v1/{}", topics.prefix(), input.topic),
    ] {
        if let Ok(parsed) = topics.parse(&topic) {
            assert!(check_id(parsed.home_id).is_ok() && check_id(parsed.device_id).is_ok());
            assert_eq!(
                topics
                    .device(parsed.home_id, parsed.device_id, parsed.channel)
                    .as_deref(),
                Ok(topic.as_str())
            );
        }
    }

    // subscription filters are not device topics
    assert!(topics.parse(&topics.all_devices(channel)).is_err());
    assert!(topics
        .parse(&topics.all_devices_shared(input.group, channel))
        .is_err());
});
