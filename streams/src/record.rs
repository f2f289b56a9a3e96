//! Records as processors see them, and the type-erased form the runtime moves between nodes.

use std::any::Any;

use bytes::Bytes;

/// Record headers, in order (a value may be null).
pub type Headers = Vec<(String, Option<Bytes>)>;

/// A key-value record with its event time and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// Key.
    pub key: K,
    /// Value.
    pub value: V,
    /// Event time in ms since the epoch.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record { key, value, timestamp, headers: Vec::new() }
    }

    /// The same record with another key and value (time and headers kept).
    pub fn with<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record { key, value, timestamp: self.timestamp, headers: self.headers }
    }
}

/// Where the record being processed came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordMetadata {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
}

/// A KTable update: the new value and the one it replaced (`None`: absent/deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct Change<V> {
    /// The value after the update.
    pub new: Option<V>,
    /// The value before the update.
    pub old: Option<V>,
}

/// A type-erased value moving between nodes.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// A type-erased record.
pub(crate) struct Rec {
    pub key: AnyBox,
    pub value: AnyBox,
    pub ts: i64,
    pub headers: Headers,
}

impl Rec {
    pub(crate) fn from_typed<K: Send + 'static, V: Send + 'static>(r: Record<K, V>) -> Rec {
        Rec { key: Box::new(r.key), value: Box::new(r.value), ts: r.timestamp, headers: r.headers }
    }

    /// The typed record; the DSL's generics guarantee the types, so a mismatch is a bug.
    pub(crate) fn typed<K: 'static, V: 'static>(self) -> Record<K, V> {
        let key = *self.key.downcast::<K>().unwrap_or_else(|_| panic!("internal: key is not a {}", std::any::type_name::<K>()));
        let value = *self.value.downcast::<V>().unwrap_or_else(|_| panic!("internal: value is not a {}", std::any::type_name::<V>()));
        Record { key, value, timestamp: self.ts, headers: self.headers }
    }
}

/// Clones a type-erased record of a known type.
pub(crate) type Cloner = fn(&Rec) -> Rec;

/// The [`Cloner`] of records with key `K` and value `V`.
pub(crate) fn cloner<K: Clone + Send + 'static, V: Clone + Send + 'static>() -> Cloner {
    |r: &Rec| Rec {
        key: Box::new(r.key.downcast_ref::<K>().expect("internal: key type").clone()),
        value: Box::new(r.value.downcast_ref::<V>().expect("internal: value type").clone()),
        ts: r.ts,
        headers: r.headers.clone(),
    }
}
