//! Devices' MQTT credentials: issuing, rotating and revoking them, and
//! checking a broker login against them.
//!
//! A device's credential is its id as username and a secret of 32 random
//! bytes as password, shown once (in RegisterDevice's or
//! RotateDeviceCredential's answer); the database keeps only its SHA-256,
//! as for API tokens. Where the broker enforces it:
//! - the embedded broker: Hearth's guard ([`crate::mqtt::guard`]) checks
//!   each CONNECT with [`BrokerLogins::login`] and each packet against
//!   [`BrokerClient`]'s rules; revoking or rotating closes the device's open
//!   connections there.
//! - Mosquitto with dynamic security: Hearth keeps a role and a client per
//!   device in step ([`crate::mqtt::dynsec`]).
//!
//! A checked login is cached for [`CACHE_MS`]; a rotation or revocation
//! takes effect at once on the replica that made it and within
//! [`CACHE_MS`] on the others.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use hearth_runtime::Clock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use hearth_proto::topics::{token_of_username, HomeAssistantTopics};

use crate::{
    access::{is_api_token, new_token, token_hash, Access},
    domain::{
        broker_acl::{token_logs_in_to_the_broker, TOKEN_USERNAME},
        BrokerClient, BrokerRefusal, Caller, Device, DeviceId, HomeId, TokenName, UnixMs,
    },
    mqtt::dynsec::Dynsec,
    storage::{ApiTokenInfo, Storage},
};

/// How long a checked device login is trusted without asking the database.
pub const CACHE_MS: i64 = 5_000;
/// Marks a device secret at a glance (and to secret scanners).
const SECRET_PREFIX: &str = "hd_";

struct CachedLogin {
    home: HomeId,
    hash: String,
    until: UnixMs,
}

pub struct BrokerLogins {
    storage: Arc<dyn Storage>,
    access: Arc<Access>,
    clock: Clock,
    cache: Mutex<HashMap<String, CachedLogin>>,
    /// Open connections of each device through the guard, to close on
    /// rotation and revocation.
    live: Mutex<HashMap<DeviceId, Vec<CancellationToken>>>,
    dynsec: Option<Arc<Dynsec>>,
    /// Home Assistant's topics, while Hearth's bridge to it is on.
    home_assistant: Option<HomeAssistantTopics>,
}

impl BrokerLogins {
    pub fn new(
        storage: Arc<dyn Storage>,
        access: Arc<Access>,
        clock: Clock,
        dynsec: Option<Arc<Dynsec>>,
        home_assistant: Option<HomeAssistantTopics>,
    ) -> Self {
        Self {
            storage,
            access,
            clock,
            cache: Mutex::default(),
            live: Mutex::default(),
            dynsec,
            home_assistant,
        }
    }

    /// Gives `device` a new credential, replacing any it had (whose open
    /// connections are closed); returns the secret, the only time it exists
    /// outside the device.
    pub async fn issue(&self, device: &Device) -> anyhow::Result<String> {
        let secret = new_token(SECRET_PREFIX);
        self.storage
            .set_device_credential(&device.id, &token_hash(&secret), self.clock.now())
            .await?;
        self.forget(&device.id);
        if let Some(dynsec) = &self.dynsec {
            dynsec
                .set_device(&device.home_id, &device.id, Some(&secret))
                .await?;
        }
        info!(device = %device.id, "device MQTT credential issued");
        Ok(secret)
    }

    /// Removes `device`'s credential and closes its connections; whether it
    /// had one.
    pub async fn revoke(&self, device: &Device) -> anyhow::Result<bool> {
        let had = self.storage.delete_device_credential(&device.id).await?;
        self.forget(&device.id);
        if let Some(dynsec) = &self.dynsec {
            dynsec.remove_device(&device.id).await?;
        }
        info!(device = %device.id, "device MQTT credential revoked");
        Ok(had)
    }

    /// Gives a new token that acts on the broker (a gateway's, or Home
    /// Assistant's: [`token_logs_in_to_the_broker`]) its own login on
    /// Mosquitto (`token.{name}`, the token as password), where Hearth
    /// manages logins through dynamic security. Nothing on the embedded
    /// broker: its guard checks tokens itself.
    pub async fn token_created(&self, info: &ApiTokenInfo, secret: &str) -> anyhow::Result<()> {
        let Some(dynsec) = &self.dynsec else {
            return Ok(());
        };
        if !self.logs_in(info) {
            return Ok(());
        }
        let ha = self.home_assistant.as_ref();
        dynsec
            .set_token(&info.name, &info.grants, &info.devices, ha, secret)
            .await?;
        info!(token = %info.name, "API token's broker login made");
        Ok(())
    }

    fn logs_in(&self, token: &ApiTokenInfo) -> bool {
        token_logs_in_to_the_broker(&token.grants, self.home_assistant.is_some())
    }

    /// Removes token `name`'s login from Mosquitto, if Hearth manages one.
    pub async fn token_revoked(&self, name: &TokenName) -> anyhow::Result<()> {
        match &self.dynsec {
            Some(dynsec) => dynsec.remove_token(name).await,
            None => Ok(()),
        }
    }

    fn forget(&self, device: &DeviceId) {
        self.cache
            .lock()
            .expect("login cache")
            .remove(device.as_str());
        let live = self.live.lock().expect("live devices").remove(device);
        for connection in live.into_iter().flatten() {
            connection.cancel();
        }
    }

    /// Who logs in with `username` and `password` on the embedded broker:
    /// a device (its id and secret), an API token (username
    /// [`TOKEN_USERNAME`], the token as password; checked as the API checks
    /// it), or, without a username, anonymous, admitted only in open mode.
    pub async fn login(
        &self,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<BrokerClient, BrokerRefusal> {
        let (Some(username), Some(password)) = (username, password) else {
            return match (username, self.access.is_open()) {
                (None, true) => Ok(BrokerClient::Anonymous),
                _ => Err(BrokerRefusal::Credential),
            };
        };
        // `token`, or `token.{name}` naming the token given (Mosquitto's form).
        let named = token_of_username(username);
        if (username == TOKEN_USERNAME || named.is_some()) && is_api_token(password) {
            return match self.access.api_token_caller(password).await.as_deref() {
                Ok(Caller::Token {
                    name,
                    grants,
                    devices,
                }) if named.is_none_or(|n| n == name) => Ok(BrokerClient::Token {
                    name: name.clone(),
                    grants: grants.clone(),
                    devices: devices.clone(),
                }),
                _ => Err(BrokerRefusal::Credential),
            };
        }
        let device =
            DeviceId::parse(username, "username").map_err(|_| BrokerRefusal::Credential)?;
        let hash = token_hash(password);
        let now = self.clock.now();
        if let Some(hit) = self.cache.lock().expect("login cache").get(username) {
            if hit.until > now {
                return match constant_time_eq(hit.hash.as_bytes(), hash.as_bytes()) {
                    true => Ok(BrokerClient::Device {
                        home: hit.home.clone(),
                        device,
                    }),
                    false => Err(BrokerRefusal::Credential),
                };
            }
        }
        let stored = self.storage.device_credential(&device).await;
        let known = self.storage.get_device(&device).await;
        let (Ok(Some(stored)), Ok(Some(known))) = (stored, known) else {
            return Err(BrokerRefusal::Credential);
        };
        self.cache.lock().expect("login cache").insert(
            username.to_owned(),
            CachedLogin {
                home: known.home_id.clone(),
                hash: stored.clone(),
                until: now + CACHE_MS,
            },
        );
        match constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
            true => Ok(BrokerClient::Device {
                home: known.home_id,
                device,
            }),
            false => Err(BrokerRefusal::Credential),
        }
    }

    /// A token cancelled when `device`'s credential is rotated or revoked,
    /// for a connection that logged in with it.
    pub fn watch(&self, device: &DeviceId) -> CancellationToken {
        let token = CancellationToken::new();
        let mut live = self.live.lock().expect("live devices");
        let tokens = live.entry(device.clone()).or_default();
        tokens.retain(|t| !t.is_cancelled());
        tokens.push(token.clone());
        token
    }

    /// Ensures every device with a credential has its role and client on
    /// Mosquitto, and that what the broker holds of Hearth's own role is in
    /// place: what a replica does at start when Hearth manages dynamic
    /// security. A device whose client had to be created has no password
    /// there (only its hash is kept here), so it needs a rotation; logged.
    pub async fn sync_broker(&self) -> anyhow::Result<()> {
        let Some(dynsec) = &self.dynsec else {
            return Ok(());
        };
        dynsec.ensure_backend().await?;
        let devices = self.storage.devices_with_credentials().await?;
        let mut created = 0;
        for id in &devices {
            let Some(device) = self.storage.get_device(id).await? else {
                continue;
            };
            if dynsec.set_device(&device.home_id, id, None).await? {
                created += 1;
                warn!(device = %id, "the broker had no client for this device: rotate its credential (RotateDeviceCredential) to give it a password there");
            }
        }
        info!(
            devices = devices.len(),
            created, "dynamic security of the broker in step with the devices' credentials"
        );
        self.check_token_logins(dynsec).await
    }

    /// Logs each token whose login the broker lost (a restored
    /// backup, say). Why only logged: Hearth keeps the token's hash, not the
    /// token, so it cannot make the login again; a new token can.
    async fn check_token_logins(&self, dynsec: &Dynsec) -> anyhow::Result<()> {
        let mut checked = HashSet::new();
        for home in self.storage.list_homes().await? {
            for token in self.storage.list_api_tokens(&home.id).await? {
                if !self.logs_in(&token) || !checked.insert(token.name.clone()) {
                    continue;
                }
                if !dynsec.token_login_exists(&token.name).await? {
                    warn!(token = %token.name, "the broker has no login for this API token, so its gateway or Home Assistant cannot connect: revoke it (RevokeApiToken) and make a new one (CreateApiToken)");
                }
            }
        }
        Ok(())
    }
}

/// Compares without stopping at the first difference. Why: how long a
/// refusal takes must not tell how much of a secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"hd_abc", b"hd_abc"));
        assert!(!constant_time_eq(b"hd_abc", b"hd_abd"));
        assert!(!constant_time_eq(b"hd_abc", b"hd_ab"));
    }
}
