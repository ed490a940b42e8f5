//! Keeping secrets out of logs and error messages.

/// A secret setting (a token, a password): `{:?}` shows `<redacted>`, so a
/// settings struct can derive `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for where it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `url` with any password replaced by `***` (`mysql://root:***@db/hearth`).
/// Why the last `@`: a generated password may contain one.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("mysql://root:s3cret@db:3306/hearth"),
            "mysql://root:***@db:3306/hearth"
        );
        assert_eq!(
            redact("mqtt://dev:p@ss@broker:1883"),
            "mqtt://dev:***@broker:1883"
        );
        assert_eq!(redact("mysql://127.0.0.1/test"), "mysql://127.0.0.1/test");
        assert_eq!(
            redact("mqtt://fan-1@broker:1883"),
            "mqtt://fan-1@broker:1883"
        );
    }
}
