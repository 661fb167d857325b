//! keyward: an embedded authorization engine for APIs called with API keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod credential;
pub mod decision;
pub mod diag;
pub mod engine;
#[cfg(feature = "tower")]
pub mod http;
pub mod policy;
pub mod store;
mod text;
pub mod token;

pub use engine::{Decision, Engine, EngineOptions, Reason, Request};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
