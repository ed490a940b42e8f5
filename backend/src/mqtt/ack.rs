//! Acknowledgements in the order messages arrived.
//!
//! MQTT requires a receiver to send PUBACKs in the order of the PUBLISHes,
//! and brokers enforce it (rumqttd drops the connection on an out-of-order
//! ack). Hearth finishes messages out of order (a status update is done at
//! once, a reading only after its batch commits), so each message takes a
//! slot on arrival and its PUBACK is sent once it and every earlier message
//! are done.

use std::{collections::VecDeque, sync::Arc};

use rumqttc::{AsyncClient, Publish};
use tokio::sync::Mutex;
use tracing::debug;

struct Slot {
    publish: Publish,
    done: bool,
}

struct State {
    /// Bumped on every new connection; acks of older ones are moot.
    epoch: u64,
    /// Token of `pending[0]`.
    base: u64,
    pending: VecDeque<Slot>,
}

/// The ordered acknowledger of one MQTT connection.
#[derive(Clone)]
pub struct AckOrder {
    client: AsyncClient,
    state: Arc<Mutex<State>>,
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
    pub fn new(client: AsyncClient) -> Self {
        Self {
            client,
            state: Arc::new(Mutex::new(State {
                epoch: 0,
                base: 0,
                pending: VecDeque::new(),
            })),
        }
    }

    /// A new connection: forget the old one's unacknowledged messages (with a
    /// clean session the broker has forgotten them too).
    pub async fn reset(&self) {
        let mut state = self.state.lock().await;
        state.epoch += 1;
        state.base += state.pending.len() as u64;
        state.pending.clear();
    }

    /// Takes the next slot for a message just received.
    pub async fn take(&self, publish: Publish) -> Ack {
        let topic = publish.topic.clone();
        let mut state = self.state.lock().await;
        let token = state.base + state.pending.len() as u64;
        state.pending.push_back(Slot {
            publish,
            done: false,
        });
        Ack {
            order: self.clone(),
            epoch: state.epoch,
            token,
            topic,
        }
    }
}

impl Ack {
    /// Marks the message done and sends every PUBACK now in order.
    pub async fn send(self) {
        let mut state = self.order.state.lock().await;
        if state.epoch != self.epoch {
            return;
        }
        let index = (self.token - state.base) as usize;
        if let Some(slot) = state.pending.get_mut(index) {
            slot.done = true;
        }
        while state.pending.front().is_some_and(|s| s.done) {
            let slot = state.pending.pop_front().expect("front exists");
            state.base += 1;
            // Why under the lock: two tasks releasing acks must not reorder them.
            if let Err(e) = self.order.client.ack(&slot.publish).await {
                debug!(topic = slot.publish.topic, error = %e, "could not acknowledge (connection closing)");
            }
        }
    }
}
