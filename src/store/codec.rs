//! The one record codec: `[FORMAT_VERSION: u8][bincode 2 standard config]`.
//!
//! Every value written by the key table goes through [`encode`] and comes back through [`decode`]. Decoding
//! never panics and never reads past [`MAX_RECORD_LEN`] bytes, whatever the input: an unknown
//! version byte gives [`StoreError::UnsupportedVersion`], anything else that does not decode exactly (short
//! input, garbage, trailing bytes) gives [`StoreError::Corrupt`] naming the record kind.
//!
//! Allocation: bincode's limit bounds strings and byte buffers by the input, but a list (`permissions`,
//! the key ids of an audit entry) is pre-allocated by serde from its claimed length, capped at 1 MiB
//! (`serde::de::size_hint::cautious`), before its elements are read. So a few corrupt bytes can make a decode
//! allocate up to 1 MiB once before failing; never more (`fuzz/fuzz_targets/record_decode.rs` checks).

use bincode::config::{self, Configuration, Limit};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Result, StoreError};

/// The record format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The largest encoded record, in bytes (version byte included).
pub const MAX_RECORD_LEN: usize = 64 * 1024;

type Config = Configuration<config::LittleEndian, config::Varint, Limit<MAX_RECORD_LEN>>;

const CONFIG: Config = config::standard().with_limit::<MAX_RECORD_LEN>();

/// A value stored through the codec.
pub trait Record: Serialize + DeserializeOwned {
    /// The record kind, as named in error messages (`key record`, `principal`, ...).
    const KIND: &'static str;
}

/// Encodes a record as its version byte followed by its bincode form.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>> {
    let body = bincode::serde::encode_to_vec(value, CONFIG).map_err(|e| StoreError::Backend {
        context: "encoding a record",
        reason: format!("{}: {e}", T::KIND),
    })?;
    let len = body.len() + 1;
    if len > MAX_RECORD_LEN {
        return Err(StoreError::TooLarge {
            what: T::KIND,
            len,
            max: MAX_RECORD_LEN,
        });
    }
    let mut out = Vec::with_capacity(len);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record written by [`encode`]. Safe on arbitrary bytes.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StoreError::corrupt(T::KIND, "the record is empty"));
    };
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            what: T::KIND,
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    if bytes.len() > MAX_RECORD_LEN {
        return Err(StoreError::corrupt(
            T::KIND,
            format!(
                "the record is {} bytes, more than the {MAX_RECORD_LEN} allowed",
                bytes.len()
            ),
        ));
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(body, CONFIG)
        .map_err(|e| StoreError::corrupt(T::KIND, format!("cannot decode: {e}")))?;
    if read != body.len() {
        return Err(StoreError::corrupt(
            T::KIND,
            format!("{} trailing bytes after the record", body.len() - read),
        ));
    }
    Ok(value)
}
