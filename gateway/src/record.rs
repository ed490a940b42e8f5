//! What one queued record holds: a reading batch, as every queue has held
//! (its bare encoding), or a sensor's account of a run (an envelope holding
//! it, which never decodes as a batch: `hearth_proto::signing::unsigned_account`;
//! see `hearth.v1.SignedReadingBatch`).
//! Both travel in one queue so an account reaches the backend after the
//! batches sent before it: counted against them, not ahead of them.

use hearth_proto::v1::{ReadingBatch, RunAccount, SignedReadingBatch};
use prost::{DecodeError, Message as _};

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Batch(ReadingBatch),
    Account(RunAccount),
}

impl Record {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // Why the envelope first: a bare batch's fields are unknown to it,
        // so it decodes as an envelope holding no account.
        let envelope = SignedReadingBatch::decode(bytes)?;
        if envelope.account.is_empty() {
            Ok(Record::Batch(ReadingBatch::decode(bytes)?))
        } else {
            Ok(Record::Account(RunAccount::decode(
                envelope.account.as_slice(),
            )?))
        }
    }

    /// Readings it holds (an account holds none).
    pub fn readings(&self) -> u64 {
        match self {
            Record::Batch(batch) => batch.readings.len() as u64,
            Record::Account(_) => 0,
        }
    }

    pub fn time_unix_ms(&self) -> i64 {
        match self {
            Record::Batch(batch) => batch.time_unix_ms,
            Record::Account(account) => account.time_unix_ms,
        }
    }

    /// The device it is of, as it claims.
    pub fn device_id(&self) -> &str {
        match self {
            Record::Batch(batch) => &batch.device_id,
            Record::Account(account) => &account.device_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::{Metric, Reading};

    use super::*;

    #[test]
    fn a_bare_batch_and_an_accounts_envelope_are_told_apart() {
        let batch = ReadingBatch {
            home_id: "h".into(),
            device_id: "s1".into(),
            seq: 7,
            run_start: 3,
            time_unix_ms: 11,
            readings: vec![Reading {
                metric: Metric::PressureHpa as i32,
                value: 1013.0,
            }],
        };
        let record = Record::decode(&batch.encode_to_vec()).unwrap();
        assert_eq!((record.readings(), record.time_unix_ms()), (1, 11));
        assert_eq!(record, Record::Batch(batch));
        let account = RunAccount {
            home_id: "h".into(),
            device_id: "s1".into(),
            run_start: 3,
            last_seq: 9,
            metrics: vec![Metric::PressureHpa as i32],
            time_unix_ms: 12,
        };
        let bytes = hearth_proto::signing::unsigned_account(account.encode_to_vec());
        let record = Record::decode(&bytes).unwrap();
        assert_eq!((record.readings(), record.device_id()), (0, "s1"));
        assert_eq!(record, Record::Account(account));
        assert_eq!(
            ReadingBatch::decode(bytes.as_slice()).unwrap().device_id,
            "",
            "an account's record is no batch of its device"
        );
    }
}
