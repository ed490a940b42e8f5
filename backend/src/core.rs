//! [`Core`]: the state the services share (gRPC handlers, MQTT intake, the
//! automation engine, the demo), apart from start-up so none of them imports
//! `app`.

use std::sync::Arc;

use hearth_runtime::Clock;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    access::Access,
    automation::Automation,
    control::Control,
    credentials::BrokerLogins,
    directory::Directory,
    ingest::{Ingest, IngestItem, StoredCommit},
    metrics::Metrics,
    mqtt::Publisher,
    storage::Storage,
};

/// Commits buffered per live subscriber before it starts skipping.
const LIVE_BUFFER: usize = 1_024;

/// What the services share.
pub struct Core {
    pub storage: Arc<dyn Storage>,
    /// Who is calling: logins, tokens, the open mode.
    pub access: Arc<Access>,
    pub directory: Arc<Directory>,
    pub ingest: Ingest,
    pub control: Arc<Control>,
    pub automation: Arc<Automation>,
    pub stored: broadcast::Sender<Arc<StoredCommit>>,
    pub metrics: Arc<Metrics>,
    /// Devices' MQTT credentials.
    pub logins: Arc<BrokerLogins>,
    pub clock: Clock,
    /// Cancelled when shutdown starts, so long-lived streams end and the
    /// server's graceful shutdown does not wait on open browser tabs.
    pub closing: CancellationToken,
}

impl Core {
    /// The shared state over `storage`, publishing commands through
    /// `publisher`; also returns the ingest queue's receiving end, for the
    /// writer task.
    pub fn new(
        storage: Arc<dyn Storage>,
        access: Arc<Access>,
        publisher: Publisher,
        clock: Clock,
        command_ttl_ms: i64,
        replica: String,
        metrics: Arc<Metrics>,
        logins: Arc<BrokerLogins>,
    ) -> (Self, mpsc::Receiver<IngestItem>) {
        let directory = Arc::new(Directory::new(storage.clone()));
        let (ingest, ingest_rx) = Ingest::new();
        let (stored, _) = broadcast::channel(LIVE_BUFFER);
        let control = Arc::new(Control::new(
            storage.clone(),
            directory.clone(),
            publisher,
            metrics.clone(),
            clock.clone(),
            command_ttl_ms,
        ));
        let automation = Arc::new(Automation::new(
            storage.clone(),
            control.clone(),
            metrics.clone(),
            clock.clone(),
            replica,
        ));
        let core = Self {
            storage,
            access,
            directory,
            ingest,
            control,
            automation,
            stored,
            metrics,
            logins,
            clock,
            closing: CancellationToken::new(),
        };
        (core, ingest_rx)
    }
}
