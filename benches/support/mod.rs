//! Helpers the load benches share (`#[path = "support/mod.rs"] mod support;`): starting the
//! release booking example, and reading its Prometheus metrics.
// Each bench uses a part of them.
#![allow(dead_code)]

pub mod example;
pub mod prometheus;
