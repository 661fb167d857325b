//! keyward: an embedded authorization engine for APIs called with API keys.
#![forbid(unsafe_code)]

pub mod store;
pub mod token;
