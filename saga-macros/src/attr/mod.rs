//! The arguments of `#[saga(...)]` and `#[step(...)]`: a small list parser that reports every
//! malformed entry in the user's words, and the two attributes' keys.

mod list;
mod saga;
mod step;

pub(crate) use saga::{SagaArgs, saga_args};
pub(crate) use step::{StepOpts, step_opts};
