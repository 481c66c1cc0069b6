// A public saga in a crate that denies missing docs and missing Debug impls: the generated
// items are documented and Debug.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
//! A documented crate.

use sagaflow::{Saga, SagaContext, StepResult, saga};

/// A public saga.
#[derive(Debug)]
pub struct Publish;

#[saga]
impl Publish {
    /// Stores a draft.
    #[step(compensate = delete)]
    pub async fn draft(&self, _cx: &SagaContext, text: &String) -> StepResult<u64> {
        Ok(text.len() as u64)
    }

    /// Deletes the draft.
    pub async fn delete(&self, _cx: &SagaContext, _draft: &u64) -> StepResult<()> {
        Ok(())
    }

    /// Publishes it.
    #[step(pivot)]
    pub async fn publish(&self, _cx: &SagaContext, draft: &u64) -> StepResult<bool> {
        Ok(*draft > 0)
    }

    /// Tells the followers.
    #[step(retriable, retry(max_attempts = 20))]
    pub async fn announce(&self, _cx: &SagaContext, publish: &bool) -> StepResult<bool> {
        Ok(*publish)
    }
}

fn main() {
    let state = Publish::rollback(Publish::start("hello".into()));
    assert!(matches!(state, PublishState::Compensated { ref text } if text == "hello"));
    assert!(<Publish as Saga>::description().to_mermaid().contains("publish (pivot)"));
}
