//! Which devices exist, cached in memory so ingest can check every message's
//! sender without a query; and when each device was last heard from.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::{
    domain::{Device, DeviceId, DeviceKind, HomeId, UnixMs},
    storage::{Storage, StorageError},
};

/// What ingest needs to know about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub home_id: HomeId,
    pub kind: DeviceKind,
}

pub struct Directory {
    storage: Arc<dyn Storage>,
    known: RwLock<HashMap<DeviceId, Known>>,
    last_seen: RwLock<HashMap<DeviceId, UnixMs>>,
}

impl Directory {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            known: RwLock::default(),
            last_seen: RwLock::default(),
        }
    }

    /// The device, from the cache or else storage (a device registered
    /// through another replica is found on first use).
    pub async fn lookup(&self, id: &DeviceId) -> Result<Option<Known>, StorageError> {
        if let Some(known) = self.known.read().expect("directory lock").get(id) {
            return Ok(Some(known.clone()));
        }
        let device = self.storage.get_device(id).await?;
        Ok(device.map(|d| self.remember(&d)))
    }

    pub fn remember(&self, device: &Device) -> Known {
        let known = Known {
            home_id: device.home_id.clone(),
            kind: device.kind,
        };
        self.known
            .write()
            .expect("directory lock")
            .insert(device.id.clone(), known.clone());
        known
    }

    pub fn seen(&self, id: &DeviceId, at: UnixMs) {
        let mut last_seen = self.last_seen.write().expect("directory lock");
        let entry = last_seen.entry(id.clone()).or_default();
        *entry = (*entry).max(at);
    }

    /// The later of what storage says and what this process saw.
    pub fn last_seen(&self, device: &Device) -> Option<UnixMs> {
        let here = self
            .last_seen
            .read()
            .expect("directory lock")
            .get(&device.id)
            .copied();
        here.max(device.last_seen)
    }
}
