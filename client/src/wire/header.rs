//! Request headers: the first 8 bytes of every request body are api key, api version and
//! correlation id in every header version, so they can be read before anything else is
//! known. That lets the broker answer an unknown key or version instead of dropping it.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// The fixed fields at the front of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPeek {
    /// Raw API key (may be one this crate does not know).
    pub api_key: i16,
    /// Requested API version.
    pub api_version: i16,
    /// Correlation id to echo in the response.
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id; `None` if the body is shorter than 8 bytes.
pub fn peek(body: &[u8]) -> Option<HeaderPeek> {
    if body.len() < 8 {
        return None;
    }
    Some(HeaderPeek {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        api_version: i16::from_be_bytes([body[2], body[3]]),
        correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

/// Why a request header could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than the 8 fixed bytes.
    #[error("request is {0} bytes long, shorter than the 8-byte fixed header")]
    Short(usize),
    /// An API key that kafka-protocol does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// The header itself is malformed.
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// Decodes the full request header (client id, tagged fields) for a known API key and
/// version, advancing `body` to the start of the request message.
pub fn decode(body: &mut Bytes) -> Result<(ApiKey, RequestHeader), HeaderError> {
    let peek = peek(body).ok_or(HeaderError::Short(body.len()))?;
    let key = ApiKey::try_from(peek.api_key).map_err(|_| HeaderError::UnknownApiKey(peek.api_key))?;
    let header_version = key.request_header_version(peek.api_version);
    let header = RequestHeader::decode(body, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok((key, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_fixed_fields() {
        let body = [0, 18, 0, 3, 0, 0, 0, 42, 0xff];
        assert_eq!(
            peek(&body),
            Some(HeaderPeek { api_key: 18, api_version: 3, correlation_id: 42 })
        );
        assert_eq!(peek(&body[..7]), None);
    }

    #[test]
    fn decode_rejects_unknown_key() {
        let mut b = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(decode(&mut b), Err(HeaderError::UnknownApiKey(0x7f00))));
    }
}
