//! The automation engine: every stored reading is matched against the
//! enabled threshold rules whose source it is, and a rule's decision is
//! handed to control (which acts only on devices in AUTO).

use std::sync::{Arc, RwLock};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    control::Control,
    domain::ThresholdRule,
    ingest::StoredBatch,
    storage::{Storage, StorageError},
};

/// The rules, cached; reloaded whenever they change.
pub struct Automation {
    storage: Arc<dyn Storage>,
    rules: RwLock<Arc<Vec<ThresholdRule>>>,
}

impl Automation {
    pub async fn load(storage: Arc<dyn Storage>) -> Result<Self, StorageError> {
        let rules = storage.list_rules(None).await?;
        Ok(Self {
            storage,
            rules: RwLock::new(Arc::new(rules)),
        })
    }

    /// Re-reads the rules after a change.
    pub async fn reload(&self) -> Result<(), StorageError> {
        let rules = self.storage.list_rules(None).await?;
        *self.rules.write().expect("rules lock") = Arc::new(rules);
        Ok(())
    }

    fn rules(&self) -> Arc<Vec<ThresholdRule>> {
        self.rules.read().expect("rules lock").clone()
    }

    /// Evaluates rules against stored readings until shutdown.
    pub async fn run(
        self: Arc<Self>,
        mut stored: broadcast::Receiver<Arc<StoredBatch>>,
        control: Arc<Control>,
        shutdown: CancellationToken,
    ) {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = stored.recv() => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                // Why this is safe: a threshold rule only needs the newest
                // value, which is still coming.
                Err(RecvError::Lagged(n)) => {
                    warn!(
                        skipped = n,
                        "automation fell behind and skipped reading batches"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let rules = self.rules();
            for reading in &batch.readings {
                for rule in rules.iter().filter(|r| {
                    r.enabled && r.source == reading.device_id && r.metric == reading.metric
                }) {
                    let Some(on) = rule.decide(reading.value) else {
                        continue;
                    };
                    match control
                        .rule_decision(&rule.target, on, &rule.reason(reading.value, on))
                        .await
                    {
                        Ok(true) => {
                            info!(rule = %rule.id, target = %rule.target, on, value = reading.value, "rule switched a device")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            warn!(rule = %rule.id, target = %rule.target, error = %e, "rule could not switch its device")
                        }
                    }
                }
            }
        }
    }
}
