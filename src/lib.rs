//! keyward: an embedded authorization engine for APIs called with API keys.
#![deny(unsafe_code)] // one exception: `prefetch::line`, a hint that cannot fault
#![warn(missing_docs)]

pub mod credential;
pub mod decision;
pub mod diag;
pub mod engine;
#[cfg(feature = "tower")]
pub mod http;
pub mod policy;
mod prefetch;
pub mod store;
mod text;
pub mod token;

pub use engine::{Decision, Engine, EngineOptions, Reason, Request};
pub use text::Name;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
