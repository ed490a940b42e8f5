//! Limits per caller, applied by the gate (`access.rs`) to every API call:
//! a request rate and a cap on open streams. Over either, the call is
//! refused with RESOURCE_EXHAUSTED saying which, and counted in
//! `hearth_requests_refused_total{reason}`. Open mode (no users, loopback
//! only) has no callers to tell apart, so it is not limited.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use hearth_runtime::metrics::{Counter, Family};
use tonic::Status;

use crate::domain::{limits::Bucket, UnixMs};

/// How much each caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests per second, sustained (0: unlimited).
    pub per_second: u32,
    /// Requests at once before the rate applies.
    pub burst: u32,
    /// Streams open at once (0: unlimited).
    pub streams: u32,
}

/// The `reason` label of a refused request.
pub type ReasonLabel = [(&'static str, &'static str); 1];

/// Callers' buckets and open streams, by the caller's name.
pub struct Limits {
    allowance: Allowance,
    buckets: Mutex<HashMap<String, Bucket>>,
    streams: Arc<Mutex<HashMap<String, u32>>>,
    refused: Family<ReasonLabel, Counter>,
}

/// Why bounded: a replica forgets idle callers' buckets beyond this (each
/// starts full again) rather than grow without limit.
const REMEMBERED_CALLERS: usize = 10_000;

impl Limits {
    pub fn new(allowance: Allowance, refused: Family<ReasonLabel, Counter>) -> Self {
        Self {
            allowance,
            buckets: Mutex::default(),
            streams: Arc::default(),
            refused,
        }
    }

    /// Admits one request of `caller` at `now`, or says to slow down.
    pub fn admit(&self, caller: &str, now: UnixMs) -> Result<(), Status> {
        let Allowance {
            per_second, burst, ..
        } = self.allowance;
        if per_second == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("buckets lock");
        // Why a lookup before the entry: the entry API would copy the name
        // on every call, and nearly every call is from a known caller.
        if !buckets.contains_key(caller) {
            if buckets.len() >= REMEMBERED_CALLERS {
                buckets.clear();
            }
            buckets.insert(caller.to_owned(), Bucket::full(burst, now));
        }
        let bucket = buckets.get_mut(caller).expect("inserted above");
        if bucket.take(now, per_second, burst) {
            return Ok(());
        }
        self.refused.get_or_create(&[("reason", "rate")]).inc();
        Err(Status::resource_exhausted(format!(
            "{caller} made more than {per_second} requests a second \
             (HEARTH_REQUESTS_PER_SECOND); slow down and retry"
        )))
    }

    /// Takes one of `caller`'s stream slots, held until the slot is dropped.
    pub fn open_stream(&self, caller: &str) -> Result<StreamSlot, Status> {
        let cap = self.allowance.streams;
        let mut streams = self.streams.lock().expect("streams lock");
        let open = streams.entry(caller.to_owned()).or_default();
        if cap != 0 && *open >= cap {
            drop(streams);
            self.refused.get_or_create(&[("reason", "streams")]).inc();
            return Err(Status::resource_exhausted(format!(
                "{caller} has {cap} streams open, the most allowed \
                 (HEARTH_STREAMS_PER_CALLER); close one first"
            )));
        }
        *open += 1;
        Ok(StreamSlot {
            streams: self.streams.clone(),
            caller: caller.to_owned(),
        })
    }
}

/// One open stream of a caller; the slot frees when this is dropped.
pub struct StreamSlot {
    streams: Arc<Mutex<HashMap<String, u32>>>,
    caller: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().expect("streams lock");
        if let Some(open) = streams.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.caller);
            }
        }
    }
}

/// A response body that holds a stream slot for as long as the stream is
/// being sent: the slot frees when the body ends or the client goes away.
pub struct SlotBody {
    pub body: tonic::body::Body,
    pub _slot: StreamSlot,
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32, streams: u32) -> Limits {
        Limits::new(
            Allowance {
                per_second,
                burst,
                streams,
            },
            Family::default(),
        )
    }

    #[test]
    fn each_caller_has_a_bucket_of_its_own() {
        let l = limits(1, 2, 0);
        assert!(l.admit("ann", 0).is_ok() && l.admit("ann", 0).is_ok());
        let refused = l.admit("ann", 0).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("HEARTH_REQUESTS_PER_SECOND"));
        assert!(l.admit("bob", 0).is_ok(), "another caller is not held back");
        assert!(l.admit("ann", 1_000).is_ok(), "a second later");
        assert_eq!(
            l.refused.get_or_create(&[("reason", "rate")]).get(),
            1,
            "counted"
        );
        assert!(
            (0..1000).all(|_| limits(0, 0, 0).admit("x", 0).is_ok()),
            "0: unlimited"
        );
    }

    #[test]
    fn a_stream_slot_frees_when_dropped() {
        let l = limits(0, 0, 2);
        let (a, _b) = (l.open_stream("ann").unwrap(), l.open_stream("ann").unwrap());
        let refused = l.open_stream("ann").err().expect("a third is refused");
        assert!(refused.message().contains("HEARTH_STREAMS_PER_CALLER"));
        assert!(l.open_stream("bob").is_ok());
        drop(a);
        assert!(l.open_stream("ann").is_ok());
    }
}
