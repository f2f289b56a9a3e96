//! Arbitrary bytes through the broker's request path: frame check, header peek, header and
//! body decode for every served API and version. Must never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samsa_client::wire::frame;

fuzz_target!(|data: &[u8]| {
    let _ = frame::check(data, 100 * 1024 * 1024);
    let _ = samsa_broker::api::decode(bytes::Bytes::copy_from_slice(data));
    // Also with a valid header for a served API in front, so bodies get deep coverage.
    if let Some((&[key, version], rest)) = data.split_first_chunk::<2>() {
        let (api, _, hi) = samsa_broker::api::SUPPORTED[key as usize % samsa_broker::api::SUPPORTED.len()];
        let mut body = Vec::with_capacity(rest.len() + 12);
        body.extend_from_slice(&(api as i16).to_be_bytes());
        body.extend_from_slice(&((version as i16) % (hi + 1)).to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff]);
        body.extend_from_slice(rest);
        let _ = samsa_broker::api::decode(bytes::Bytes::from(body));
    }
});
