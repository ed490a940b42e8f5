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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rumqttc::{QoS, Request};

    use super::*;
    use crate::mqtt::testing::{acks, Sent};

    fn received(pkid: u16) -> Publish {
        let mut publish = Publish::new("hearth/h/d/readings", QoS::AtLeastOnce, vec![1]);
        publish.pkid = pkid;
        publish
    }

    /// The packet ids acknowledged so far, waiting briefly for the release
    /// task to hand over what is due.
    async fn acked(sent: &Sent) -> Vec<u16> {
        let mut ids = Vec::new();
        while let Ok(Ok(request)) =
            tokio::time::timeout(Duration::from_millis(50), sent.recv_async()).await
        {
            match request {
                Request::PubAck(ack) => ids.push(ack.pkid),
                other => panic!("expected only PUBACKs, got {other:?}"),
            }
        }
        ids
    }

    #[tokio::test]
    async fn acknowledgements_go_out_in_arrival_order_whatever_the_commit_order() {
        let (order, sent) = acks();
        let [one, two, three] = [1, 2, 3].map(|id| order.take(received(id)));

        three.send().await;
        assert_eq!(acked(&sent).await, [] as [u16; 0], "3 waits for 1 and 2");
        one.send().await;
        assert_eq!(acked(&sent).await, [1], "1 goes; 3 still waits for 2");
        two.send().await;
        assert_eq!(acked(&sent).await, [2, 3]);
    }

    #[tokio::test]
    async fn a_message_done_at_once_waits_for_an_earlier_one_still_being_stored() {
        let (order, sent) = acks();
        let reading = order.take(received(10));
        let status = order.take(received(11));
        status.send().await;
        let later = order.take(received(12));
        later.send().await;
        assert!(acked(&sent).await.is_empty());
        reading.send().await;
        assert_eq!(acked(&sent).await, [10, 11, 12]);
    }

    #[tokio::test]
    async fn an_ack_dropped_unsent_holds_back_later_ones_until_the_next_connection() {
        let (order, sent) = acks();
        let lost = order.take(received(1));
        let after = order.take(received(2));
        drop(lost);
        after.send().await;
        // Why held back: the dropped message's effect was never stored, so
        // acknowledging past it would tell the broker it may forget it.
        assert!(acked(&sent).await.is_empty());

        order.reset();
        let fresh = order.take(received(1));
        fresh.send().await;
        assert_eq!(acked(&sent).await, [1]);
    }

    #[tokio::test]
    async fn acks_of_a_previous_connection_are_not_sent_on_the_new_one() {
        let (order, sent) = acks();
        let old = order.take(received(7));
        order.reset();
        let new = order.take(received(8));
        old.send().await;
        assert!(acked(&sent).await.is_empty());
        new.send().await;
        assert_eq!(
            acked(&sent).await,
            [8],
            "the new connection's ack does not wait for the old"
        );
    }

    #[tokio::test]
    async fn a_qos_0_message_takes_a_slot_but_sends_no_puback() {
        let (order, sent) = acks();
        let mut fire_and_forget = received(0);
        fire_and_forget.qos = QoS::AtMostOnce;
        let first = order.take(fire_and_forget);
        let second = order.take(received(5));
        second.send().await;
        assert!(acked(&sent).await.is_empty());
        first.send().await;
        assert_eq!(acked(&sent).await, [5]);
    }

    #[tokio::test]
    async fn the_release_task_ends_when_every_order_and_ack_is_gone() {
        let (order, sent) = acks();
        let ack = order.take(received(1));
        drop(order);
        ack.send().await;
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            let mut ids = Vec::new();
            while let Ok(Request::PubAck(a)) = sent.recv_async().await {
                ids.push(a.pkid);
            }
            ids
        })
        .await;
        assert_eq!(
            outcome.ok(),
            Some(vec![1]),
            "the client was dropped after the last ack"
        );
    }
}
