//! keyward: an embedded authorization engine for APIs called with API keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod credential;
pub mod decision;
pub mod diag;
pub mod policy;
pub mod token;
