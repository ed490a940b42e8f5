//! The app's client-side routes and their paths. The backend answers every
//! unknown path with `index.html`, so each of these reloads as it is.
//!
//! - `/`: the remembered home, or the picker
//! - `/homes/{home}`: a home's device tiles
//! - `/homes/{home}/devices/{device}`: one sensor (charts, history) or one
//!   fan or light (controls, commands)
//! - `/homes/{home}/automation`: rules, decisions, dry runs

/// Where the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Start,
    Home(String),
    Device {
        home: String,
        device: String,
    },
    Automation(String),
    /// A path the app does not know.
    Unknown(String),
}

impl Route {
    /// The route of `path` (the URL's pathname).
    pub fn parse(path: &str) -> Self {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let owned = |s: &str| decode(s);
        match parts.as_slice() {
            [] => Self::Start,
            ["homes", home] => Self::Home(owned(home)),
            ["homes", home, "automation"] => Self::Automation(owned(home)),
            ["homes", home, "devices", device] => Self::Device {
                home: owned(home),
                device: owned(device),
            },
            _ => Self::Unknown(path.to_owned()),
        }
    }

    /// The path of this route.
    pub fn path(&self) -> String {
        match self {
            Self::Start => "/".into(),
            Self::Home(home) => format!("/homes/{}", encode(home)),
            Self::Automation(home) => format!("/homes/{}/automation", encode(home)),
            Self::Device { home, device } => {
                format!("/homes/{}/devices/{}", encode(home), encode(device))
            }
            Self::Unknown(path) => path.clone(),
        }
    }

    /// The home this route is in, if any.
    pub fn home(&self) -> Option<&str> {
        match self {
            Self::Home(home) | Self::Automation(home) | Self::Device { home, .. } => Some(home),
            Self::Start | Self::Unknown(_) => None,
        }
    }
}

// Why no general percent-encoding: ids are [A-Za-z0-9_-] (hearth_proto::ids),
// which need none; anything else is escaped byte by byte.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_routes_and_back() {
        for route in [
            Route::Start,
            Route::Home("demo".into()),
            Route::Automation("demo".into()),
            Route::Device {
                home: "demo".into(),
                device: "demo-fan".into(),
            },
        ] {
            assert_eq!(Route::parse(&route.path()), route);
        }
    }

    #[test]
    fn trailing_slashes_do_not_matter_and_strangers_are_unknown() {
        assert_eq!(Route::parse("/homes/demo/"), Route::Home("demo".into()));
        assert_eq!(
            Route::parse("/homes/demo/nothing"),
            Route::Unknown("/homes/demo/nothing".into())
        );
    }

    #[test]
    fn odd_characters_are_escaped_in_paths() {
        let route = Route::Home("a b/c".into());
        assert_eq!(route.path(), "/homes/a%20b%2Fc");
        assert_eq!(Route::parse(&route.path()), route);
        assert_eq!(route.home(), Some("a b/c"));
    }
}
