//! The `hearth.v1` contract shared by the backend, the gateway, the Pi agent
//! and the browser app.
//!
//! - [`v1`]: messages and gRPC stubs generated at build time from
//!   `proto/hearth/v1/*.proto` (server stubs behind the `server` feature,
//!   native transport behind `transport`, so the same crate builds for wasm32).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
//! - [`topics`]: the MQTT topic scheme, the only place a topic is built or parsed.
//! - [`ids`]: the syntax of home and device ids, which appear in topics.
//! - `signing` (feature `signing`): device keys, keys files, and the HMAC of
//!   a UDP datagram (`hearth.v1.SignedReadingBatch`), for the sensor that
//!   signs and the gateway that checks.

pub mod ids;
#[cfg(feature = "signing")]
pub mod signing;
pub mod topics;

/// Generated `hearth.v1` messages, clients and (with `server`) services.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/hearth.v1.rs"));
}

/// Encoded `FileDescriptorSet` of every hearth.v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hearth_descriptor.bin"));

impl v1::Metric {
    /// Every metric a sensor measures (all but `Unspecified`).
    pub const MEASURED: [Self; 3] = [
        Self::TemperatureCelsius,
        Self::HumidityPercent,
        Self::PressureHpa,
    ];

    /// Short lower-case name used in storage, logs and URLs: `temperature_celsius`.
    pub fn short_name(self) -> &'static str {
        match self {
            v1::Metric::Unspecified => "unspecified",
            v1::Metric::TemperatureCelsius => "temperature_celsius",
            v1::Metric::HumidityPercent => "humidity_percent",
            v1::Metric::PressureHpa => "pressure_hpa",
        }
    }

    /// The unit its values are in, as people write it (`°C`, `%`, `hPa`);
    /// `None` for `Unspecified`.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            v1::Metric::Unspecified => None,
            v1::Metric::TemperatureCelsius => Some("°C"),
            v1::Metric::HumidityPercent => Some("%"),
            v1::Metric::PressureHpa => Some("hPa"),
        }
    }

    /// Inverse of [`short_name`](Self::short_name); `None` for unknown names.
    pub fn from_short_name(name: &str) -> Option<Self> {
        Self::MEASURED.into_iter().find(|m| m.short_name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::v1::Metric;

    #[test]
    fn metric_short_names_round_trip() {
        for m in [
            Metric::TemperatureCelsius,
            Metric::HumidityPercent,
            Metric::PressureHpa,
        ] {
            assert_eq!(Metric::from_short_name(m.short_name()), Some(m));
        }
        assert_eq!(Metric::from_short_name("unspecified"), None);
        assert_eq!(Metric::from_short_name("volts"), None);
    }
}
