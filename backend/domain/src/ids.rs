//! Validated ids ("parse, don't validate"): once a `HomeId` or `DeviceId`
//! exists it is safe to put in a topic, a URL or a query.

use hearth_proto::ids::{check_id, IdError};

/// An id failed validation; `field` names what it was given as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct InvalidId {
    pub field: &'static str,
    pub reason: IdError,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value`; `field` names it in the error.
            pub fn parse(value: &str, field: &'static str) -> Result<Self, InvalidId> {
                check_id(value).map_err(|reason| InvalidId { field, reason })?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A home: the unit a user picks in the app and that devices belong to.
    HomeId
);
id_type!(
    /// A device, unique across homes.
    DeviceId
);
id_type!(
    /// An automation rule.
    RuleId
);
id_type!(
    /// A person's login name.
    Username
);
id_type!(
    /// An API token's label, unique.
    TokenName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_field_in_its_error() {
        let err = DeviceId::parse("fan/1", "device_id").unwrap_err();
        assert_eq!(
            err.to_string(),
            "device_id contains '/'; only A-Z a-z 0-9 _ - are allowed"
        );
        assert_eq!(HomeId::parse("demo", "home_id").unwrap().as_str(), "demo");
    }
}
