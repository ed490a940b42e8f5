//! Acknowledgements in the order messages arrived.
//!
//! MQTT requires a receiver to send PUBACKs in the order of the PUBLISHes,
//! and brokers enforce it (rumqttd drops the connection on an out-of-order
//! ack). Hearth finishes messages out of order (a status update is done at
//! once, a reading only after its batch commits), so each message takes a
//! slot on arrival and its PUBACK is released once it and every earlier
//! message are done.
//!
//! Released PUBACKs go, in order, through a channel to one task that hands
//! them to the MQTT client. Why not call the client under the lock: when the
//! client's request queue is full it waits for the event loop, and the event
//! loop waits for the lock to take the next message's slot — a deadlock seen
//! with a broker that allows a thousand messages in flight.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use rumqttc::{AsyncClient, Publish};
use tokio::sync::mpsc;
use tracing::debug;

struct Slot {
    publish: Publish,
    done: bool,
}

struct State {
    /// Token of `pending[0]`.
    base: u64,
    pending: VecDeque<Slot>,
}

/// The ordered acknowledger of one MQTT connection.
#[derive(Clone)]
pub struct AckOrder {
    state: Arc<Mutex<State>>,
    /// Bumped on every new connection; acks of older ones are moot.
    epoch: Arc<AtomicU64>,
    released: mpsc::UnboundedSender<(u64, Publish)>,
}

/// The right to acknowledge one message, once its effect is stored.
pub struct Ack {
    order: AckOrder,
    epoch: u64,
    token: u64,
    /// For logs.
    pub topic: String,
}

impl AckOrder {
    /// Starts the task that sends released PUBACKs through `client`; it ends
    /// when every `AckOrder` and `Ack` is gone.
    pub fn new(client: AsyncClient) -> Self {
        let (released, mut rx) = mpsc::unbounded_channel::<(u64, Publish)>();
        let epoch = Arc::new(AtomicU64::new(0));
        let current = epoch.clone();
        tokio::spawn(async move {
            while let Some((of, publish)) = rx.recv().await {
                if of != current.load(Ordering::SeqCst) {
                    continue;
                }
                if let Err(e) = client.ack(&publish).await {
                    debug!(topic = publish.topic, error = %e, "could not acknowledge (connection closing)");
                }
            }
        });
        Self {
            state: Arc::new(Mutex::new(State {
                base: 0,
                pending: VecDeque::new(),
            })),
            epoch,
            released,
        }
    }

    /// A new connection: forget the old one's unacknowledged messages (the
    /// broker redelivers them on a persistent session; with a clean one it
    /// has forgotten them too).
    pub fn reset(&self) {
        let mut state = self.state.lock().expect("ack lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        state.base += state.pending.len() as u64;
        state.pending.clear();
    }

    /// Messages received and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.state.lock().expect("ack lock").pending.len()
    }

    /// Takes the next slot for a message just received.
    pub fn take(&self, publish: Publish) -> Ack {
        let topic = publish.topic.clone();
        let mut state = self.state.lock().expect("ack lock");
        let token = state.base + state.pending.len() as u64;
        state.pending.push_back(Slot {
            publish,
            done: false,
        });
        Ack {
            order: self.clone(),
            epoch: self.epoch.load(Ordering::SeqCst),
            token,
            topic,
        }
    }
}

impl Ack {
    /// Marks the message done and releases every PUBACK now due, in order.
    pub async fn send(self) {
        let mut state = self.order.state.lock().expect("ack lock");
        if self.order.epoch.load(Ordering::SeqCst) != self.epoch {
            return;
        }
        let index = (self.token - state.base) as usize;
        if let Some(slot) = state.pending.get_mut(index) {
            slot.done = true;
        }
        while state.pending.front().is_some_and(|s| s.done) {
            let slot = state.pending.pop_front().expect("front exists");
            state.base += 1;
            // Under the lock: two tasks releasing acks must not reorder them.
            let _ = self.order.released.send((self.epoch, slot.publish));
        }
    }
}
