//! Signed UDP datagrams: a sensor's [`ReadingBatch`] travels to the gateway
//! as a [`SignedReadingBatch`], the batch's bytes and an HMAC-SHA256 over
//! them keyed with the device's own 32-byte key ([`DeviceKey`]). The batch
//! carries its device id and sequence number, so the tag covers both: a host
//! on the LAN cannot forge a reading, nor change the number of a captured one
//! to replay it as new (the gateway refuses numbers it has seen).
//!
//! Keys live in a keys file ([`DeviceKeys`]), one line per device:
//!
//! ```text
//! # DEVICE_ID  KEY (32 random bytes as 64 hex digits: `openssl rand -hex 32`)
//! living-room-sensor 6b1f…e9
//! ```
//!
//! The gateway reads every device's line, an agent its own. Nothing here
//! prints a key: [`DeviceKey`]'s `Debug` hides it, and an error in a keys
//! file names the line, never its text.
//!
//! [`ReadingBatch`]: crate::v1::ReadingBatch
//! [`SignedReadingBatch`]: crate::v1::SignedReadingBatch

use std::collections::BTreeMap;

use hmac::{Hmac, Mac as _};
use prost::Message as _;
use sha2::Sha256;

use crate::{ids::check_id, v1::SignedReadingBatch};

/// Bytes in a device key.
pub const KEY_LEN: usize = 32;
/// Bytes in a tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// What the HMAC covers before the batch. Why: a tag made for a datagram can
/// then never be valid for anything else the key might sign one day.
pub const CONTEXT: &[u8] = b"hearth.v1.SignedReadingBatch\n";
/// What the HMAC covers before a run account ([`RunAccount`]): a batch's tag
/// is then never an account's, nor the other way round.
///
/// [`RunAccount`]: crate::v1::RunAccount
pub const ACCOUNT_CONTEXT: &[u8] = b"hearth.v1.RunAccount\n";

type HmacSha256 = Hmac<Sha256>;

/// One device's key: 32 random bytes shared by the device and its gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; KEY_LEN]);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(hidden)")
    }
}

impl DeviceKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// From 64 hex digits (either case); `None` for anything else, which a
    /// caller reports without echoing it.
    pub fn from_hex(digits: &str) -> Option<Self> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(digits, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    fn mac(&self, context: &[u8], signed: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(context);
        mac.update(signed);
        mac
    }

    /// The tag of the encoded batch `batch`.
    pub fn tag(&self, batch: &[u8]) -> [u8; TAG_LEN] {
        self.mac(CONTEXT, batch).finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's tag of `batch`. Why through `verify_slice`:
    /// it compares in constant time, so the time a refusal takes says nothing
    /// about how much of a forged tag was right.
    pub fn verifies(&self, batch: &[u8], tag: &[u8]) -> bool {
        self.mac(CONTEXT, batch).verify_slice(tag).is_ok()
    }

    /// Whether `tag` is this key's tag of the encoded run account `account`.
    pub fn verifies_account(&self, account: &[u8], tag: &[u8]) -> bool {
        self.mac(ACCOUNT_CONTEXT, account).verify_slice(tag).is_ok()
    }

    /// The datagram for the encoded batch `batch`: an encoded
    /// [`SignedReadingBatch`] holding it and its tag.
    pub fn seal(&self, batch: Vec<u8>) -> Vec<u8> {
        let hmac_sha256 = self.tag(&batch).to_vec();
        SignedReadingBatch {
            batch,
            hmac_sha256,
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The datagram for the encoded run account `account`, with its tag.
    pub fn seal_account(&self, account: Vec<u8>) -> Vec<u8> {
        let hmac_sha256 = self
            .mac(ACCOUNT_CONTEXT, &account)
            .finalize()
            .into_bytes()
            .to_vec();
        SignedReadingBatch {
            account,
            hmac_sha256,
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// The datagram for the encoded run account `account` to a gateway without
/// keys: the envelope without a tag. Why not bare: a bare account could pass
/// for a reading batch (their field numbers overlap).
pub fn unsigned_account(account: Vec<u8>) -> Vec<u8> {
    SignedReadingBatch {
        account,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Device keys by device id, as a keys file lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceKeys(BTreeMap<String, DeviceKey>);

/// What is wrong with a keys file: the line and why, never its text (it may
/// hold a key, or columns swapped so that a key sits where the id should).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysError {
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for KeysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.reason),
            line => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for KeysError {}

impl DeviceKeys {
    /// Parses a keys file: a line `DEVICE_ID KEY` per device (the key as 64
    /// hex digits), separated by spaces or tabs; blank lines and lines
    /// starting with `#` are skipped. A file listing no device is refused:
    /// it is surely a mistake, and a gateway with no keys refuses everything.
    pub fn parse(text: &str) -> Result<Self, KeysError> {
        let mut keys = BTreeMap::new();
        let mut lines_of: BTreeMap<String, usize> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: String| KeysError { line: n, reason };
            let mut fields = line.split_whitespace();
            let (Some(device), Some(key), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(error(
                    "expected a device id and its key (64 hex digits), separated by a space".into(),
                ));
            };
            check_id(device).map_err(|e| error(format!("the device id {e}")))?;
            let key = DeviceKey::from_hex(key).ok_or_else(|| {
                error(format!(
                    "the key is not {} hex digits ({KEY_LEN} random bytes, e.g. from `openssl rand -hex 32`)",
                    KEY_LEN * 2
                ))
            })?;
            if let Some(first) = lines_of.insert(device.to_owned(), n) {
                return Err(error(format!("lists the same device as line {first}")));
            }
            keys.insert(device.to_owned(), key);
        }
        if keys.is_empty() {
            return Err(KeysError {
                line: 0,
                reason: "lists no device (a line `DEVICE_ID KEY` per device)".into(),
            });
        }
        Ok(Self(keys))
    }

    /// The key of `device`, if listed.
    pub fn get(&self, device: &str) -> Option<&DeviceKey> {
        self.0.get(device)
    }

    /// How many devices are listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, DeviceKey)> for DeviceKeys {
    fn from_iter<I: IntoIterator<Item = (String, DeviceKey)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ReadingBatch;

    const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const HEX_B: &str = "FFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100";

    fn key_a() -> DeviceKey {
        DeviceKey::from_hex(HEX_A).unwrap()
    }

    #[test]
    fn a_tag_is_hmac_sha256_over_the_context_and_the_batch() {
        // RFC 4231 test case 2 ("Jefe"), to pin the algorithm: with an empty
        // context the tag would be exactly this.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And ours covers the context first.
        let mut mac = HmacSha256::new_from_slice(&key_a().0).unwrap();
        mac.update(b"hearth.v1.SignedReadingBatch\nbatch");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(key_a().tag(b"batch"), expected);
        assert_ne!(key_a().tag(b"batch"), key_a().tag(b"batcH"));
    }

    #[test]
    fn a_sealed_batch_verifies_with_its_key_only_and_not_once_changed() {
        let batch = ReadingBatch {
            device_id: "s1".into(),
            seq: 7,
            ..Default::default()
        }
        .encode_to_vec();
        let datagram = SignedReadingBatch::decode(key_a().seal(batch.clone()).as_slice()).unwrap();
        assert_eq!(datagram.batch, batch);
        assert_eq!(datagram.hmac_sha256.len(), TAG_LEN);
        assert!(key_a().verifies(&datagram.batch, &datagram.hmac_sha256));
        let other = DeviceKey::from_hex(HEX_B).unwrap();
        assert!(!other.verifies(&datagram.batch, &datagram.hmac_sha256));
        let renumbered = ReadingBatch {
            device_id: "s1".into(),
            seq: 8,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(!key_a().verifies(&renumbered, &datagram.hmac_sha256));
        assert!(!key_a().verifies(&datagram.batch, &datagram.hmac_sha256[..31]));
        assert!(!key_a().verifies(&datagram.batch, &[]));
    }

    #[test]
    fn an_accounts_tag_is_no_batchs_and_a_batchs_no_accounts() {
        let bytes = b"the same bytes".to_vec();
        let account =
            SignedReadingBatch::decode(key_a().seal_account(bytes.clone()).as_slice()).unwrap();
        assert_eq!(
            (account.account.as_slice(), account.batch.len()),
            (&bytes[..], 0)
        );
        assert!(key_a().verifies_account(&bytes, &account.hmac_sha256));
        assert!(!key_a().verifies(&bytes, &account.hmac_sha256));
        assert!(!key_a().verifies_account(&bytes, &key_a().tag(&bytes)));
        let other = DeviceKey::from_hex(HEX_B).unwrap();
        assert!(!other.verifies_account(&bytes, &account.hmac_sha256));
        let unsigned = SignedReadingBatch::decode(unsigned_account(bytes.clone()).as_slice());
        let unsigned = unsigned.unwrap();
        assert_eq!((unsigned.account, unsigned.hmac_sha256.len()), (bytes, 0));
    }

    #[test]
    fn a_bare_batch_and_a_signed_one_are_told_apart() {
        let batch = ReadingBatch {
            home_id: "h".into(),
            device_id: "s1".into(),
            seq: 7,
            ..Default::default()
        };
        let bare = SignedReadingBatch::decode(batch.encode_to_vec().as_slice()).unwrap();
        assert!(bare.batch.is_empty() && bare.hmac_sha256.is_empty());
        let sealed = key_a().seal(batch.encode_to_vec());
        assert_eq!(
            ReadingBatch::decode(sealed.as_slice()).unwrap(),
            ReadingBatch::default(),
            "a signed datagram is no bare batch"
        );
    }

    #[test]
    fn a_keys_file_lists_devices_and_their_keys() {
        let keys = DeviceKeys::parse(&format!(
            "# the living room\n\n  s1 {HEX_A}\ns2\t{HEX_B}  \n"
        ))
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get("s1"), Some(&key_a()));
        assert_eq!(keys.get("s2"), DeviceKey::from_hex(HEX_B).as_ref());
        assert_eq!(keys.get("s3"), None);
    }

    #[test]
    fn a_bad_keys_file_names_the_line_and_never_shows_a_key() {
        for (text, line, reason) in [
            (
                format!("s1 {HEX_A}\ns1 {HEX_B}\n"),
                2,
                "same device as line 1",
            ),
            ("s1\n".to_owned(), 1, "expected a device id and its key"),
            (format!("s1 {HEX_A} extra\n"), 1, "expected a device id"),
            (format!("s1 {}\n", &HEX_A[..62]), 1, "not 64 hex digits"),
            (format!("s1 {}zz\n", &HEX_A[..62]), 1, "not 64 hex digits"),
            // Columns swapped: the key where the id should be.
            (format!("{HEX_A} s1\n"), 1, "not 64 hex digits"),
            (format!("a/b {HEX_A}\n"), 1, "the device id contains '/'"),
            ("# nothing\n".to_owned(), 0, "lists no device"),
        ] {
            let e = DeviceKeys::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(reason), "{text:?}: {e}");
            for hex in [HEX_A, HEX_B, &HEX_A[..62]] {
                assert!(!e.to_string().contains(hex), "{e}");
            }
        }
    }

    #[test]
    fn a_key_is_never_printed() {
        assert_eq!(format!("{:?}", key_a()), "DeviceKey(hidden)");
        let keys = DeviceKeys::parse(&format!("s1 {HEX_A}")).unwrap();
        assert!(!format!("{keys:?}").contains("0a0b"), "{keys:?}");
    }
}
