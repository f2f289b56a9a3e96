//! State stores: the bytes-level [`backend::KvBackend`] and its implementations.

pub mod backend;
pub mod memory;
pub mod rocks;

pub use backend::{BatchEntry, KvBackend};
pub use memory::InMemoryBackend;
pub use rocks::{RocksBackend, RocksBudget, RocksResources};

/// The contract every [`KvBackend`] must meet, run by each implementation's unit tests
/// (one suite for all backends, so they cannot drift apart).
#[cfg(test)]
pub(crate) mod conformance {
    use super::backend::{BatchEntry, KvBackend};

    fn put(k: &[u8], v: &[u8]) -> BatchEntry {
        (k.to_vec(), Some(v.to_vec()))
    }

    fn del(k: &[u8]) -> BatchEntry {
        (k.to_vec(), None)
    }

    fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    /// Runs every check on `b`, which must start empty; leaves it cleared.
    pub(crate) fn run_all(b: &mut dyn KvBackend) {
        starts_empty(b);
        put_get_delete(b);
        b.clear().unwrap();
        batch_applies_in_order(b);
        b.clear().unwrap();
        range_bounds_and_limit(b);
        b.clear().unwrap();
        checkpoint_rules(b);
        b.clear().unwrap();
        clear_removes_everything(b);
    }

    fn starts_empty(b: &mut dyn KvBackend) {
        assert_eq!(b.get(b"x").unwrap(), None);
        assert!(b.range(None, None, usize::MAX).unwrap().is_empty());
        assert_eq!(b.checkpoint().unwrap(), None);
        assert_eq!(b.approximate_len().unwrap(), 0);
    }

    fn put_get_delete(b: &mut dyn KvBackend) {
        b.write(&[put(b"k", b"v1")], None).unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
        b.write(&[put(b"k", b"v2")], None).unwrap();
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v2"[..]));
        b.write(&[del(b"k"), del(b"never-written")], None).unwrap();
        assert_eq!(b.get(b"k").unwrap(), None);
        // The empty key and the empty value are ordinary data.
        b.write(&[put(b"", b"")], None).unwrap();
        assert_eq!(b.get(b"").unwrap().as_deref(), Some(&b""[..]));
        b.write(&[], None).unwrap();
    }

    fn batch_applies_in_order(b: &mut dyn KvBackend) {
        b.write(&[put(b"a", b"1"), del(b"a"), del(b"b"), put(b"b", b"2"), put(b"c", b"3"), put(b"c", b"4")], None)
            .unwrap();
        assert_eq!(b.get(b"a").unwrap(), None);
        assert_eq!(b.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(b.get(b"c").unwrap().as_deref(), Some(&b"4"[..]));
    }

    fn range_bounds_and_limit(b: &mut dyn KvBackend) {
        let all: [&[u8]; 8] = [b"", b"\x00", b"a", b"ab", b"b", b"ba", b"\xff", b"\xff\xff\x00"];
        // Written out of order: the backend sorts bytewise.
        let batch: Vec<BatchEntry> = all.iter().rev().map(|k| put(k, &[k.len() as u8])).collect();
        b.write(&batch, None).unwrap();

        let got = b.range(None, None, usize::MAX).unwrap();
        assert_eq!(keys(&got), all.to_vec());
        assert_eq!(got[3].1, vec![2u8]);
        // `from` inclusive, `to` exclusive.
        assert_eq!(keys(&b.range(Some(b"a"), Some(b"b"), 100).unwrap()), vec![&b"a"[..], b"ab"]);
        assert_eq!(keys(&b.range(Some(b"aa"), Some(b"ba"), 100).unwrap()), vec![&b"ab"[..], b"b"]);
        assert_eq!(keys(&b.range(Some(b"b"), None, 100).unwrap()), vec![&b"b"[..], b"ba", b"\xff", b"\xff\xff\x00"]);
        assert_eq!(keys(&b.range(None, Some(b"a"), 100).unwrap()), vec![&b""[..], b"\x00"]);
        assert_eq!(keys(&b.range(None, Some(b""), 100).unwrap()), Vec::<&[u8]>::new());
        // Limits.
        assert_eq!(keys(&b.range(None, None, 3).unwrap()), all[..3].to_vec());
        assert_eq!(keys(&b.range(Some(b"ab"), None, 2).unwrap()), vec![&b"ab"[..], b"b"]);
        assert!(b.range(None, None, 0).unwrap().is_empty());
        // Empty and inverted ranges are empty, not errors.
        assert!(b.range(Some(b"b"), Some(b"b"), 100).unwrap().is_empty());
        assert!(b.range(Some(b"c"), Some(b"a"), 100).unwrap().is_empty());
    }

    fn checkpoint_rules(b: &mut dyn KvBackend) {
        assert_eq!(b.checkpoint().unwrap(), None);
        b.write(&[put(b"k", b"v")], Some(10)).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(10));
        // No checkpoint given: the previous one stays.
        b.write(&[put(b"k2", b"v")], None).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(10));
        // A checkpoint alone, and the extremes of i64.
        b.write(&[], Some(i64::MAX)).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(i64::MAX));
        b.write(&[], Some(-1)).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(-1));
        b.write(&[], Some(0)).unwrap();
        assert_eq!(b.checkpoint().unwrap(), Some(0));
        // The checkpoint is never visible as data.
        assert_eq!(keys(&b.range(None, None, 100).unwrap()), vec![&b"k"[..], b"k2"]);
    }

    fn clear_removes_everything(b: &mut dyn KvBackend) {
        let batch: Vec<BatchEntry> = (0u32..1000)
            .map(|i| (i.to_be_bytes().to_vec(), Some(vec![7; 10])))
            .chain([put(b"\xff\xff\xff\xff\xff", b"z")])
            .collect();
        b.write(&batch, Some(42)).unwrap();
        assert!(b.approximate_len().unwrap() > 0);
        b.clear().unwrap();
        assert!(b.range(None, None, usize::MAX).unwrap().is_empty());
        assert_eq!(b.get(b"\xff\xff\xff\xff\xff").unwrap(), None);
        assert_eq!(b.checkpoint().unwrap(), None);
        assert_eq!(b.approximate_len().unwrap(), 0);
        // Clearing an empty store is fine, and the store is usable afterwards.
        b.clear().unwrap();
        b.write(&[put(b"again", b"1")], Some(1)).unwrap();
        assert_eq!(b.get(b"again").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(b.checkpoint().unwrap(), Some(1));
        b.clear().unwrap();
    }
}
