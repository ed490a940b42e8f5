//! Who may do what: roles per home, the caller a request runs as, and the
//! decision for every RPC of the API.
//!
//! The rule a user sees: a role in a home lets you see (viewer), switch
//! (operator) or change (admin) that home; a home you have no role in does
//! not exist for you, so every answer about it is the one a missing home
//! gets. [`decision`] is the one table of what each RPC needs; a method it
//! does not list is refused, so a new RPC cannot ship open by accident.

use crate::ids::{DeviceId, HomeId};

/// A role in one home. Viewer, operator and admin each include what the
/// ones before them may do; ingest stands apart: it may only send readings
/// (`IngestBatch`), which admins may too. It is what a gateway's API token
/// gets, so a box on the LAN that holds one can neither see nor switch
/// anything. Declared first, it is the lowest when a caller's roles in a
/// home are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Ingest,
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `need` may.
    pub fn includes(self, need: Role) -> bool {
        match need {
            Role::Ingest => matches!(self, Role::Ingest | Role::Admin),
            _ => self != Role::Ingest && self >= need,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role in a home.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    pub home: HomeId,
    pub role: Role,
}

/// The devices an API token may act for, within its homes. A gateway's
/// token names the devices behind it, so a box on the LAN that holds it can
/// speak for those sensors and no other of the home's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceScope {
    /// Every device of the token's homes.
    #[default]
    All,
    /// These devices only; to the token the rest do not exist.
    Only(Vec<DeviceId>),
}

impl DeviceScope {
    /// `All` for an empty list (how the API spells "no limit").
    pub fn from_list(devices: Vec<DeviceId>) -> Self {
        if devices.is_empty() {
            DeviceScope::All
        } else {
            DeviceScope::Only(devices)
        }
    }

    pub fn covers(&self, device: &str) -> bool {
        match self {
            DeviceScope::All => true,
            DeviceScope::Only(devices) => devices.iter().any(|d| d.as_str() == device),
        }
    }

    /// The list the API shows: empty for `All`.
    pub fn as_list(&self) -> &[DeviceId] {
        match self {
            DeviceScope::All => &[],
            DeviceScope::Only(devices) => devices,
        }
    }
}

/// Whom a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No users exist yet and every listener is on loopback: whoever can
    /// reach the port is the machine's owner (the zero-setup embedded run).
    Open,
    User {
        name: String,
        grants: Vec<Grant>,
    },
    /// An API token, by its name.
    Token {
        name: String,
        grants: Vec<Grant>,
        devices: DeviceScope,
    },
}

/// Why a caller may not do something, as the caller may learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No role in the thing's home: answered exactly like a thing that
    /// does not exist.
    NotFound,
    /// A role in the home, but not enough of one.
    Forbidden { role: Role, need: Role },
}

impl Caller {
    /// What commands and audit records name as who asked: a user's name,
    /// `token:<name>`, or `api` in open mode. Never what the request says.
    pub fn name(&self) -> String {
        match self {
            Caller::Open => "api".to_owned(),
            Caller::User { name, .. } => name.clone(),
            Caller::Token { name, .. } => format!("token:{name}"),
        }
    }

    pub fn grants(&self) -> &[Grant] {
        match self {
            Caller::Open => &[],
            Caller::User { grants, .. } | Caller::Token { grants, .. } => grants,
        }
    }

    /// The caller's role in `home`, if any (admin everywhere in open mode).
    pub fn role_in(&self, home: &HomeId) -> Option<Role> {
        match self {
            Caller::Open => Some(Role::Admin),
            _ => self
                .grants()
                .iter()
                .filter(|g| &g.home == home)
                .map(|g| g.role)
                .max(),
        }
    }

    /// Whether the caller sees `home` in lists (a gateway's ingest token
    /// does not).
    pub fn sees(&self, home: &HomeId) -> bool {
        self.role_in(home).is_some_and(|r| r.includes(Role::Viewer))
    }

    /// Whether the caller may act for `device` at all (a token may be
    /// limited to some devices of its homes).
    pub fn covers(&self, device: &DeviceId) -> bool {
        match self {
            Caller::Token { devices, .. } => devices.covers(device.as_str()),
            _ => true,
        }
    }

    /// Ok if the caller's role in `device`'s home, `home`, includes `need`
    /// and its scope covers the device; a device outside the scope does
    /// not exist for it.
    pub fn require_device(
        &self,
        home: &HomeId,
        device: &DeviceId,
        need: Role,
    ) -> Result<(), Denied> {
        if !self.covers(device) {
            return Err(Denied::NotFound);
        }
        self.require(home, need)
    }

    /// Ok if the caller's role in `home` includes `need`.
    pub fn require(&self, home: &HomeId, need: Role) -> Result<(), Denied> {
        match self.role_in(home) {
            None => Err(Denied::NotFound),
            Some(role) if role.includes(need) => Ok(()),
            // A gateway's token sees nothing, so to it the home's things do
            // not exist either.
            Some(role) if !role.includes(Role::Viewer) => Err(Denied::NotFound),
            Some(role) => Err(Denied::Forbidden { role, need }),
        }
    }
}

/// What an RPC needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Anyone, without a token (logging in).
    Public,
    /// Any authenticated caller; the handler answers only with what the
    /// caller sees (its homes).
    Caller,
    /// At least this role in the home of the thing the request names; the
    /// handler resolves the home and checks with [`Caller::require`].
    Home(Role),
}

/// The decision for a gRPC method path (`/hearth.v1.DeviceService/SetMode`).
/// `None`: Hearth has no decision for it, and the request is refused.
pub fn decision(path: &str) -> Option<Decision> {
    use Decision::*;
    use Role::*;
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    Some(match (service, method) {
        ("hearth.v1.AuthService", "Login") => Public,
        ("hearth.v1.AuthService", "Renew" | "Logout" | "WhoAmI") => Caller,
        (
            "hearth.v1.AuthService",
            "CreateUser" | "SetMembership" | "CreateApiToken" | "ListApiTokens" | "RevokeApiToken"
            | "ListAuditEvents",
        ) => Home(Admin),

        // A new home is its creator's, who becomes its admin.
        ("hearth.v1.DeviceService", "CreateHome" | "ListHomes") => Caller,
        // A device's credential is the key to its topics: admins only.
        (
            "hearth.v1.DeviceService",
            "RegisterDevice" | "RotateDeviceCredential" | "RevokeDeviceCredential",
        ) => Home(Admin),
        (
            "hearth.v1.DeviceService",
            "ListDevices" | "GetDevice" | "ListCommands" | "WatchDevices",
        ) => Home(Viewer),
        ("hearth.v1.DeviceService", "SetMode") => Home(Operator),

        // Readings written through the API come from a gateway (its ingest
        // token) or are a home's data (imports, tools: its admins).
        ("hearth.v1.TelemetryService", "IngestBatch") => Home(Ingest),
        (
            "hearth.v1.TelemetryService",
            "ListReadings" | "WatchReadings" | "GetSeries" | "ExportReadings" | "GetDelivery",
        ) => Home(Viewer),

        ("hearth.v1.AutomationService", "CreateRule" | "UpdateRule" | "DeleteRule") => Home(Admin),
        ("hearth.v1.AutomationService", "ListRules" | "ListDecisions" | "DryRun") => Home(Viewer),
        _ => return None,
    })
}

/// Whether `path` is one of Hearth's own API methods (which need a
/// [`decision`]) rather than health, reflection or the web app.
pub fn is_api(path: &str) -> bool {
    path.starts_with("/hearth.")
}

/// Whether `path` is a server-streaming method: each open one holds one of
/// its caller's stream slots until it ends.
pub fn is_stream(path: &str) -> bool {
    matches!(
        path,
        "/hearth.v1.DeviceService/WatchDevices"
            | "/hearth.v1.TelemetryService/WatchReadings"
            | "/hearth.v1.TelemetryService/ExportReadings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(id: &str) -> HomeId {
        HomeId::parse(id, "home_id").unwrap()
    }

    fn user(grants: &[(&str, Role)]) -> Caller {
        Caller::User {
            name: "ann".into(),
            grants: grants
                .iter()
                .map(|(h, role)| Grant {
                    home: home(h),
                    role: *role,
                })
                .collect(),
        }
    }

    #[test]
    fn a_role_includes_the_ones_below_it() {
        let ann = user(&[("x", Role::Operator)]);
        assert_eq!(ann.require(&home("x"), Role::Viewer), Ok(()));
        assert_eq!(ann.require(&home("x"), Role::Operator), Ok(()));
        assert_eq!(
            ann.require(&home("x"), Role::Admin),
            Err(Denied::Forbidden {
                role: Role::Operator,
                need: Role::Admin
            })
        );
    }

    #[test]
    fn another_homes_things_do_not_exist_for_a_caller() {
        let ann = user(&[("x", Role::Admin)]);
        assert_eq!(ann.require(&home("y"), Role::Viewer), Err(Denied::NotFound));
        assert!(!ann.sees(&home("y")));
    }

    #[test]
    fn the_highest_of_several_grants_in_a_home_counts() {
        let ann = user(&[("x", Role::Viewer), ("x", Role::Admin)]);
        assert_eq!(ann.role_in(&home("x")), Some(Role::Admin));
    }

    #[test]
    fn requested_by_is_who_the_caller_is() {
        assert_eq!(user(&[]).name(), "ann");
        let script = Caller::Token {
            name: "backup".into(),
            grants: vec![],
            devices: DeviceScope::All,
        };
        assert_eq!(script.name(), "token:backup");
        assert_eq!(Caller::Open.name(), "api");
    }

    #[test]
    fn unknown_methods_have_no_decision() {
        assert_eq!(decision("/hearth.v1.DeviceService/DeleteEverything"), None);
        assert_eq!(decision("/hearth.v1.DeviceService"), None);
        assert_eq!(decision(""), None);
        assert_eq!(
            decision("/hearth.v1.DeviceService/SetMode"),
            Some(Decision::Home(Role::Operator))
        );
        assert_eq!(
            decision("/hearth.v1.AuthService/Login"),
            Some(Decision::Public)
        );
    }

    #[test]
    fn an_ingest_role_sends_readings_and_nothing_else() {
        let gateway = user(&[("x", Role::Ingest)]);
        assert_eq!(gateway.require(&home("x"), Role::Ingest), Ok(()));
        for need in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(gateway.require(&home("x"), need), Err(Denied::NotFound));
        }
        assert!(!gateway.sees(&home("x")), "a gateway lists no home");
        assert!(Role::Admin.includes(Role::Ingest));
        assert!(!Role::Operator.includes(Role::Ingest));
        assert!(!Role::Viewer.includes(Role::Ingest));
        assert_eq!(
            decision("/hearth.v1.TelemetryService/IngestBatch"),
            Some(Decision::Home(Role::Ingest))
        );
    }

    #[test]
    fn a_token_limited_to_devices_finds_no_other_device_of_its_home() {
        let device = |id: &str| DeviceId::parse(id, "device_id").unwrap();
        let gateway = Caller::Token {
            name: "shed-gateway".into(),
            grants: vec![Grant {
                home: home("x"),
                role: Role::Ingest,
            }],
            devices: DeviceScope::from_list(vec![device("shed-1")]),
        };
        assert_eq!(
            gateway.require_device(&home("x"), &device("shed-1"), Role::Ingest),
            Ok(())
        );
        assert_eq!(
            gateway.require_device(&home("x"), &device("hall-1"), Role::Ingest),
            Err(Denied::NotFound)
        );
        assert_eq!(
            gateway.require_device(&home("y"), &device("shed-1"), Role::Ingest),
            Err(Denied::NotFound)
        );
        assert_eq!(DeviceScope::from_list(vec![]), DeviceScope::All);
        assert!(user(&[("x", Role::Admin)]).covers(&device("hall-1")));
    }

    #[test]
    fn roles_round_trip_their_names() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
