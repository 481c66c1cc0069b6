//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[macro_use]
mod store_hook;

pub mod backends;
pub mod servers;
