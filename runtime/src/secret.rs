//! Keeping secrets out of logs and error messages.

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
