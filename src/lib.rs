//! # sagaflow
//!
//! Compile-time checked sagas for Rust services. Put `#[saga]` on an inherent impl block and
//! `#[step(...)]` on its async fns; the compiler proves the saga well formed and the runtime
//! runs the one definition synchronously, through a message queue, or throttled.
//!
//! See the README for the DSL and the guarantees.
#![forbid(unsafe_code)]

pub use saga_macros::{saga, step};
pub use saga_runtime::*;
