//! Home and device ids: 1 to 64 characters of `[A-Za-z0-9_-]`.
//!
//! Why so strict: ids are MQTT topic levels, so `/`, `+`, `#` and `$` would
//! change what a topic means, and they are shown in URLs and logs.

/// Longest accepted id.
pub const MAX_ID_LEN: usize = 64;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Empty,
    TooLong(usize),
    BadChar(char),
}

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdError::Empty => write!(f, "must not be empty"),
            IdError::TooLong(n) => {
                write!(f, "is {n} characters long, at most {MAX_ID_LEN} allowed")
            }
            IdError::BadChar(c) => write!(f, "contains {c:?}; only A-Z a-z 0-9 _ - are allowed"),
        }
    }
}

impl std::error::Error for IdError {}

/// Checks that `id` is a valid home or device id.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(id.len()));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for id in ["a", "demo-home", "fan_1", &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(check_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn rejects_empty_long_and_topic_special_ids() {
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id(&"x".repeat(65)), Err(IdError::TooLong(65)));
        for (id, c) in [
            ("a/b", '/'),
            ("+", '+'),
            ("#", '#'),
            ("$sys", '$'),
            ("é", 'é'),
            ("a b", ' '),
        ] {
            assert_eq!(check_id(id), Err(IdError::BadChar(c)), "{id}");
        }
    }
}
