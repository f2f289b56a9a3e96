//! Serdes: how keys and values become bytes and back. Every type that crosses a topic or a
//! state store has a [`DefaultSerde`]; Kafka's encodings are kept (UTF-8 strings,
//! big-endian integers), and any serde type is JSON through [`Json`] or [`json_serde!`].

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

/// Turns values of `T` into bytes (`None`: a Kafka null) and back.
pub trait Serde<T>: Send + Sync + 'static {
    /// The bytes of `value`; `None` writes a null.
    fn serialize(&self, value: &T) -> Option<Vec<u8>>;
    /// The value of `bytes` (`None`: a null); an error says why the bytes do not fit.
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, String>;
}

/// A shared serde.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// The serde a type uses by default in topics and stores.
pub trait DefaultSerde: Sized + 'static {
    /// The default serde of this type.
    fn serde() -> SerdeRef<Self>;
}

fn need<'a>(bytes: Option<&'a [u8]>, what: &str) -> Result<&'a [u8], String> {
    bytes.ok_or_else(|| format!("got a null where {what} was expected (use an Option type to accept nulls)"))
}

/// UTF-8 text.
pub struct StringSerde;
impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Option<Vec<u8>> {
        Some(value.as_bytes().to_vec())
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        String::from_utf8(need(bytes, "a string")?.to_vec()).map_err(|e| format!("not UTF-8: {e}"))
    }
}

/// Raw bytes.
pub struct BytesSerde;
impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Option<Vec<u8>> {
        Some(value.clone())
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Vec<u8>, String> {
        Ok(need(bytes, "bytes")?.to_vec())
    }
}
impl Serde<Bytes> for BytesSerde {
    fn serialize(&self, value: &Bytes) -> Option<Vec<u8>> {
        Some(value.to_vec())
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(need(bytes, "bytes")?))
    }
}

macro_rules! int_serde {
    ($t:ty, $name:literal) => {
        impl Serde<$t> for IntSerde {
            fn serialize(&self, value: &$t) -> Option<Vec<u8>> {
                Some(value.to_be_bytes().to_vec())
            }
            fn deserialize(&self, bytes: Option<&[u8]>) -> Result<$t, String> {
                let b = need(bytes, $name)?;
                let arr = b.try_into().map_err(|_| format!("{} bytes cannot be {} (it takes {})", b.len(), $name, std::mem::size_of::<$t>()))?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
        impl DefaultSerde for $t {
            fn serde() -> SerdeRef<Self> {
                Arc::new(IntSerde)
            }
        }
    };
}

/// Big-endian fixed-width numbers, as Kafka's IntegerSerde, LongSerde and DoubleSerde.
pub struct IntSerde;
int_serde!(i32, "an i32");
int_serde!(i64, "an i64");
int_serde!(u32, "a u32");
int_serde!(u64, "a u64");
int_serde!(f64, "an f64");

/// Nulls as `None`, anything else through the inner serde.
pub struct OptionSerde<T>(SerdeRef<T>);
impl<T: 'static> Serde<Option<T>> for OptionSerde<T> {
    fn serialize(&self, value: &Option<T>) -> Option<Vec<u8>> {
        value.as_ref().and_then(|v| self.0.serialize(v))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<T>, String> {
        match bytes {
            None => Ok(None),
            Some(b) => self.0.deserialize(Some(b)).map(Some),
        }
    }
}

/// Always null; reads anything as `()` (for keys a pipeline ignores).
pub struct UnitSerde;
impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Option<Vec<u8>> {
        None
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

/// JSON through serde_json.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);
impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T) -> Option<Vec<u8>> {
        // Serializing a plain data type to JSON only fails for maps with non-string keys.
        Some(serde_json::to_vec(value).unwrap_or_else(|e| format!("\"unserializable: {e}\"").into_bytes()))
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        serde_json::from_slice(need(bytes, "JSON")?).map_err(|e| format!("bad JSON: {e}"))
    }
}

/// A value carried as JSON: `Json<Order>` works in any topic or store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Json<T>(pub T);

struct JsonWrap<T>(PhantomData<fn() -> T>);
impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Serde<Json<T>> for JsonWrap<T> {
    fn serialize(&self, value: &Json<T>) -> Option<Vec<u8>> {
        JsonSerde(PhantomData).serialize(&value.0)
    }
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Json<T>, String> {
        JsonSerde::<T>(PhantomData).deserialize(bytes).map(Json)
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> DefaultSerde for Json<T> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(JsonWrap::<T>(PhantomData))
    }
}

impl DefaultSerde for String {
    fn serde() -> SerdeRef<Self> {
        Arc::new(StringSerde)
    }
}
impl DefaultSerde for Vec<u8> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(BytesSerde)
    }
}
impl DefaultSerde for Bytes {
    fn serde() -> SerdeRef<Self> {
        Arc::new(BytesSerde)
    }
}
impl DefaultSerde for () {
    fn serde() -> SerdeRef<Self> {
        Arc::new(UnitSerde)
    }
}
impl<T: DefaultSerde> DefaultSerde for Option<T> {
    fn serde() -> SerdeRef<Self> {
        Arc::new(OptionSerde(T::serde()))
    }
}
impl DefaultSerde for serde_json::Value {
    fn serde() -> SerdeRef<Self> {
        Arc::new(JsonSerde::<serde_json::Value>(PhantomData))
    }
}

/// Constructors of the built-in serdes.
pub struct Serdes;
impl Serdes {
    /// UTF-8 strings.
    pub fn string() -> SerdeRef<String> {
        Arc::new(StringSerde)
    }
    /// JSON of any serde type.
    pub fn json<T: serde::Serialize + serde::de::DeserializeOwned + 'static>() -> SerdeRef<T> {
        Arc::new(JsonSerde(PhantomData))
    }
    /// The default serde of `T`.
    pub fn of<T: DefaultSerde>() -> SerdeRef<T> {
        T::serde()
    }
}

/// Gives a serde type JSON as its default serde: `json_serde!(Order, Customer);`.
#[macro_export]
macro_rules! json_serde {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::serde::DefaultSerde for $t {
            fn serde() -> $crate::serde::SerdeRef<Self> {
                $crate::serde::Serdes::json::<$t>()
            }
        })+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round<T: DefaultSerde + PartialEq + std::fmt::Debug>(v: T) {
        let s = T::serde();
        let b = s.serialize(&v);
        assert_eq!(s.deserialize(b.as_deref()).unwrap(), v);
    }

    #[test]
    fn built_in_serdes_round_trip() {
        round("héllo".to_string());
        round(42i64);
        round(-7i32);
        round(3.5f64);
        round(vec![0u8, 1, 2]);
        round(Some("x".to_string()));
        round(None::<String>);
        round(Json(vec![1, 2, 3]));
        assert_eq!(i64::serde().serialize(&1).unwrap(), vec![0, 0, 0, 0, 0, 0, 0, 1], "Kafka's LongSerializer layout");
    }

    #[test]
    fn bad_bytes_say_why() {
        let e = i64::serde().deserialize(Some(b"abc")).unwrap_err();
        assert!(e.contains("3 bytes"), "{e}");
        let e = String::serde().deserialize(None).unwrap_err();
        assert!(e.contains("Option"), "{e}");
        assert!(String::serde().deserialize(Some(&[0xff])).unwrap_err().contains("UTF-8"));
    }
}
