//! The engine: drives a [`Saga`](crate::Saga) state machine in each mode.
