//! Which datagrams the gateway takes: free of I/O, so every refusal is
//! unit-tested here.
//!
//! With a keys file ([`Admission::Signed`]) a datagram must be a
//! `hearth.v1.SignedReadingBatch` whose batch names a device listed there,
//! whose tag is that device's key's tag of the batch (compared in constant
//! time), and whose sequence number the gateway has not taken before
//! ([`ReplayGuard`]). Without one ([`Admission::Open`]; the gateway allows it
//! only while it listens on loopback) any reading batch is taken, bare or
//! signed, and nothing is checked but its form.
//!
//! A datagram may instead hold a sensor's account of a run (its `account`
//! field): checked as a batch is, against its own tag context, but never
//! refused as a replay. Why: an account said again changes nothing (Hearth
//! keeps the highest number said of a run), and a sensor says its previous
//! run's account again at every start, in case the first one was lost.
//!
//! Why the batch is decoded before its tag is checked: the batch names the
//! device, so the key. Decoding is bounded (8 KiB) and cannot fail in a way
//! that matters; nothing of an unverified batch goes further than a log line.

use hearth_proto::{
    signing::{unsigned_account, DeviceKeys},
    v1::{ReadingBatch, RunAccount, SignedReadingBatch},
};
use prost::Message as _;

use crate::{record::Record, replay::ReplayGuard, Refusal, MAX_DATAGRAM};

/// How datagrams are checked.
#[derive(Debug)]
pub enum Admission {
    /// No keys: any well-formed batch is taken (loopback only).
    Open,
    /// Every datagram signed with its device's key, and new.
    Signed {
        keys: DeviceKeys,
        replay: ReplayGuard,
    },
}

/// A datagram that passed: its batch or account, and the encoding to queue.
#[derive(Debug, PartialEq)]
pub struct Admitted {
    pub record: Record,
    /// What the queue keeps and the forwarder decodes ([`Record::decode`]):
    /// the batch alone, or the account in its envelope, the signature
    /// checked and dropped.
    pub bytes: Vec<u8>,
}

impl Admission {
    /// Checks one datagram; changes nothing (see [`Self::record`]).
    pub fn check(&self, datagram: &[u8]) -> Result<Admitted, Refusal> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(Refusal::Oversize(datagram.len()));
        }
        // Why decode as signed first: a bare ReadingBatch decodes as an empty
        // SignedReadingBatch (their field numbers differ), never the reverse.
        let signed =
            SignedReadingBatch::decode(datagram).map_err(|e| Refusal::NotABatch(e.to_string()))?;
        if !signed.account.is_empty() {
            if !signed.batch.is_empty() {
                return Err(Refusal::NotABatch(
                    "holds both a batch and an account".into(),
                ));
            }
            return self.check_account(signed);
        }
        let (bytes, tag) = if signed.batch.is_empty() {
            (datagram.to_vec(), None)
        } else {
            (signed.batch, Some(signed.hmac_sha256))
        };
        let batch = ReadingBatch::decode(bytes.as_slice())
            .map_err(|e| Refusal::NotABatch(e.to_string()))?;
        if batch.device_id.is_empty() {
            return Err(Refusal::Unnamed);
        }
        match self {
            // Why a signed batch too: without keys nothing can be checked,
            // and a sensor that signs then works with a test gateway.
            Admission::Open => {}
            Admission::Signed { keys, replay } => {
                let Some(tag) = tag else {
                    return Err(Refusal::Unsigned);
                };
                let key = keys
                    .get(&batch.device_id)
                    .ok_or_else(|| Refusal::UnknownDevice(batch.device_id.clone()))?;
                if !key.verifies(&bytes, &tag) {
                    return Err(Refusal::BadSignature(batch.device_id));
                }
                if !replay.admits(&batch.device_id, batch.seq) {
                    return Err(Refusal::Replay {
                        device: batch.device_id,
                        seq: batch.seq,
                    });
                }
            }
        }
        Ok(Admitted {
            record: Record::Batch(batch),
            bytes,
        })
    }

    /// Checks a datagram's account: named, and with a key, signed by its
    /// device's key.
    fn check_account(&self, signed: SignedReadingBatch) -> Result<Admitted, Refusal> {
        let account = RunAccount::decode(signed.account.as_slice())
            .map_err(|e| Refusal::NotAnAccount(e.to_string()))?;
        if account.device_id.is_empty() {
            return Err(Refusal::Unnamed);
        }
        if let Admission::Signed { keys, .. } = self {
            if signed.hmac_sha256.is_empty() {
                return Err(Refusal::Unsigned);
            }
            let key = keys
                .get(&account.device_id)
                .ok_or_else(|| Refusal::UnknownDevice(account.device_id.clone()))?;
            if !key.verifies_account(&signed.account, &signed.hmac_sha256) {
                return Err(Refusal::BadSignature(account.device_id));
            }
        }
        Ok(Admitted {
            record: Record::Account(account),
            bytes: unsigned_account(signed.account),
        })
    }

    /// Records that `record` (which passed [`Self::check`]) was queued, so a
    /// batch's number is not taken again. Why apart from the check: a
    /// datagram the full queue refused was not taken, so its number stays
    /// free.
    pub fn record(&mut self, record: &Record) {
        if let (Admission::Signed { replay, .. }, Record::Batch(batch)) = (self, record) {
            replay.record(&batch.device_id, batch.seq);
        }
    }

    /// The marks file's text if it changed since the last call (signed only).
    pub fn take_marks(&mut self) -> Option<String> {
        match self {
            Admission::Open => None,
            Admission::Signed { replay, .. } => replay.take_marks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::{
        signing::DeviceKey,
        v1::{Metric, Reading},
    };

    use super::*;
    use crate::DropReason;

    fn key(byte: u8) -> DeviceKey {
        DeviceKey::from_bytes([byte; 32])
    }

    fn batch(device: &str, seq: u64) -> ReadingBatch {
        ReadingBatch {
            home_id: "h".into(),
            device_id: device.into(),
            seq,
            time_unix_ms: 1_700_000_000_000,
            readings: vec![Reading {
                metric: Metric::TemperatureCelsius as i32,
                value: 21.5,
            }],
            ..Default::default()
        }
    }

    fn signed() -> Admission {
        Admission::Signed {
            keys: [("s1".to_owned(), key(1)), ("s2".to_owned(), key(2))]
                .into_iter()
                .collect(),
            replay: ReplayGuard::default(),
        }
    }

    /// Checks `datagram` and, if it passes, records it, as the gateway does.
    fn take(admission: &mut Admission, datagram: &[u8]) -> Result<ReadingBatch, DropReason> {
        match take_record(admission, datagram)? {
            Record::Batch(batch) => Ok(batch),
            account => panic!("a batch was sent, {account:?} taken"),
        }
    }

    fn take_record(admission: &mut Admission, datagram: &[u8]) -> Result<Record, DropReason> {
        let admitted = admission.check(datagram).map_err(|r| r.reason())?;
        admission.record(&admitted.record);
        Ok(admitted.record)
    }

    fn account(device: &str, last_seq: u64) -> RunAccount {
        RunAccount {
            home_id: "h".into(),
            device_id: device.into(),
            run_start: 1,
            last_seq,
            metrics: vec![Metric::TemperatureCelsius as i32],
            time_unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_genuine_datagram_is_taken_and_queued_without_its_signature() {
        let admission = signed();
        let bytes = batch("s1", 5).encode_to_vec();
        let admitted = admission.check(&key(1).seal(bytes.clone())).unwrap();
        assert_eq!(admitted.record, Record::Batch(batch("s1", 5)));
        assert_eq!(admitted.bytes, bytes);
    }

    #[test]
    fn a_forged_datagram_is_refused() {
        let mut admission = signed();
        // Signed with another device's key, or with a key never given out.
        for forger in [key(2), key(9)] {
            assert_eq!(
                take(&mut admission, &forger.seal(batch("s1", 5).encode_to_vec())),
                Err(DropReason::BadSignature)
            );
        }
        // A genuine tag on a changed batch: more readings, another number.
        let genuine =
            SignedReadingBatch::decode(key(1).seal(batch("s1", 5).encode_to_vec()).as_slice())
                .unwrap();
        for changed in [
            batch("s1", 6),
            ReadingBatch {
                time_unix_ms: 1,
                ..batch("s1", 5)
            },
        ] {
            let forged = SignedReadingBatch {
                batch: changed.encode_to_vec(),
                hmac_sha256: genuine.hmac_sha256.clone(),
                ..Default::default()
            };
            assert_eq!(
                take(&mut admission, &forged.encode_to_vec()),
                Err(DropReason::BadSignature)
            );
        }
        assert!(
            take(&mut admission, &key(1).seal(batch("s1", 5).encode_to_vec())).is_ok(),
            "the forgeries took no number"
        );
    }

    #[test]
    fn a_signed_account_is_taken_again_and_again_and_a_forged_one_never() {
        let mut admission = signed();
        let bytes = account("s1", 9).encode_to_vec();
        let genuine = key(1).seal_account(bytes.clone());
        for _ in 0..2 {
            assert_eq!(
                take_record(&mut admission, &genuine),
                Ok(Record::Account(account("s1", 9))),
                "an account said again changes nothing, so it is no replay"
            );
        }
        let queued = admission.check(&genuine).unwrap().bytes;
        assert_eq!(
            Record::decode(&queued),
            Ok(Record::Account(account("s1", 9)))
        );
        assert_eq!(admission.take_marks(), None, "accounts take no number");
        let refused = |datagram: &[u8]| admission.check(datagram).map_err(|r| r.reason());
        assert_eq!(
            refused(&key(2).seal_account(bytes.clone())),
            Err(DropReason::BadSignature),
            "another device's key"
        );
        assert_eq!(
            refused(&key(1).seal(bytes.clone())),
            Err(DropReason::Malformed),
            "a batch's tag on an account's bytes is a batch, and not one"
        );
        let batch_tag = SignedReadingBatch {
            account: bytes.clone(),
            hmac_sha256: key(1).tag(&bytes).to_vec(),
            ..Default::default()
        };
        assert_eq!(
            refused(&batch_tag.encode_to_vec()),
            Err(DropReason::BadSignature),
            "a batch's tag is no account's"
        );
        assert_eq!(
            refused(&unsigned_account(bytes.clone())),
            Err(DropReason::Unsigned)
        );
        assert_eq!(
            refused(&key(3).seal_account(account("s3", 9).encode_to_vec())),
            Err(DropReason::UnknownDevice)
        );
        assert_eq!(
            refused(&key(1).seal_account(account("", 9).encode_to_vec())),
            Err(DropReason::Unnamed)
        );
        let both = SignedReadingBatch {
            batch: batch("s1", 5).encode_to_vec(),
            account: bytes,
            hmac_sha256: vec![0; 32],
        };
        assert_eq!(refused(&both.encode_to_vec()), Err(DropReason::Malformed));
        let not_an_account = key(1).seal_account(vec![0xff, 0xff]);
        assert_eq!(refused(&not_an_account), Err(DropReason::Malformed));
    }

    #[test]
    fn a_replayed_datagram_is_refused_and_the_next_one_taken() {
        let mut admission = signed();
        let first = key(1).seal(batch("s1", 5).encode_to_vec());
        assert!(take(&mut admission, &first).is_ok());
        assert_eq!(take(&mut admission, &first), Err(DropReason::Replay));
        assert_eq!(
            take(&mut admission, &key(1).seal(batch("s1", 4).encode_to_vec())).map(|b| b.seq),
            Ok(4),
            "an earlier number not yet seen (reordered on the LAN)"
        );
        assert_eq!(
            take(&mut admission, &key(1).seal(batch("s1", 6).encode_to_vec())).map(|b| b.seq),
            Ok(6)
        );
        assert!(
            take(&mut admission, &key(2).seal(batch("s2", 5).encode_to_vec())).is_ok(),
            "another device's numbers are its own"
        );
    }

    #[test]
    fn a_datagram_checked_but_not_recorded_keeps_its_number_free() {
        let mut admission = signed();
        let datagram = key(1).seal(batch("s1", 5).encode_to_vec());
        assert!(admission.check(&datagram).is_ok());
        assert!(
            admission.check(&datagram).is_ok(),
            "e.g. the queue was full"
        );
        assert_eq!(admission.take_marks(), None);
        take(&mut admission, &datagram).unwrap();
        assert_eq!(admission.take_marks().as_deref(), Some("s1 5\n"));
    }

    #[test]
    fn unsigned_unknown_and_malformed_datagrams_are_refused_by_reason() {
        let admission = signed();
        let refused = |datagram: &[u8]| admission.check(datagram).map_err(|r| r.reason());
        assert_eq!(
            refused(&batch("s1", 5).encode_to_vec()),
            Err(DropReason::Unsigned)
        );
        assert_eq!(
            refused(&key(3).seal(batch("s3", 5).encode_to_vec())),
            Err(DropReason::UnknownDevice)
        );
        assert_eq!(
            refused(&key(1).seal(batch("", 5).encode_to_vec())),
            Err(DropReason::Unnamed)
        );
        assert_eq!(refused(&[0xff, 0xff, 0xff]), Err(DropReason::Malformed));
        let not_a_batch = SignedReadingBatch {
            batch: vec![0xff, 0xff],
            hmac_sha256: key(1).tag(&[0xff, 0xff]).to_vec(),
            ..Default::default()
        };
        assert_eq!(
            refused(&not_a_batch.encode_to_vec()),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            refused(&vec![0u8; MAX_DATAGRAM + 1]),
            Err(DropReason::Oversize)
        );
    }

    #[test]
    fn refusals_name_the_device_they_claim_and_escape_it() {
        let admission = signed();
        let claimed = key(9).seal(batch("s1", 5).encode_to_vec());
        assert_eq!(
            admission.check(&claimed).unwrap_err().to_string(),
            "signature does not match the key of device \"s1\""
        );
        let evil = key(9).seal(batch("x\nforged log line", 5).encode_to_vec());
        let message = admission.check(&evil).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn without_keys_bare_and_signed_batches_are_taken_unchecked() {
        let mut admission = Admission::Open;
        let bare = batch("s1", 5).encode_to_vec();
        assert_eq!(take(&mut admission, &bare), Ok(batch("s1", 5)));
        assert_eq!(take(&mut admission, &bare), Ok(batch("s1", 5)));
        let sealed = key(9).seal(batch("s1", 6).encode_to_vec());
        let admitted = admission.check(&sealed).unwrap();
        assert_eq!(admitted.bytes, batch("s1", 6).encode_to_vec());
        let unsigned = unsigned_account(account("s1", 9).encode_to_vec());
        assert_eq!(
            take_record(&mut admission, &unsigned),
            Ok(Record::Account(account("s1", 9)))
        );
        assert_eq!(
            admission.check(&batch("", 5).encode_to_vec()),
            Err(Refusal::Unnamed)
        );
        assert_eq!(admission.take_marks(), None);
    }
}
