//! [`OrchestratorBuilder`]: everything an [`Orchestrator`] is made of, set before it exists, so
//! no setting can be lost on a clone.

use std::fmt;
use std::sync::Arc;

use super::completion::{Completion, CompletionHook};
use super::config::OrchestratorConfig;
use super::orchestrator::Orchestrator;
use crate::Saga;
use crate::store::SagaStore;
use crate::transport::Transport;

/// Builds an [`Orchestrator`]: [`Orchestrator::builder`], then the optional settings, then
/// [`build`](Self::build).
///
/// The completion hook is set here and nowhere else: an orchestrator, once built, is shared
/// by its clones and can no longer change, so a hook can never be set on one clone and missed
/// by another.
#[must_use = "an OrchestratorBuilder does nothing until `build()`"]
pub struct OrchestratorBuilder<S: Saga> {
    saga: Arc<S>,
    transport: Arc<dyn Transport>,
    store: Arc<dyn SagaStore>,
    config: OrchestratorConfig,
    hook: Option<CompletionHook<S>>,
}

impl<S: Saga> fmt::Debug for OrchestratorBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("saga", &S::description().name)
            .field("transport", &self.transport)
            .field("store", &self.store)
            .field("config", &self.config)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl<S: Saga> OrchestratorBuilder<S> {
    pub(super) fn new(
        saga: Arc<S>,
        transport: Arc<dyn Transport>,
        store: Arc<dyn SagaStore>,
    ) -> Self {
        Self {
            saga,
            transport,
            store,
            config: OrchestratorConfig::default(),
            hook: None,
        }
    }

    /// The settings (default: [`OrchestratorConfig::default`]).
    pub fn config(mut self, config: OrchestratorConfig) -> Self {
        self.config = config;
        self
    }

    /// The completion hook: called once per saga that ends on this replica in the async and
    /// throttled modes (and for sync sagas finished by recovery), with its outcome. A panic
    /// in the hook is caught and logged.
    pub fn on_complete<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Completion<S>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.hook = Some(Arc::new(move |completion| Box::pin(hook(completion))));
        self
    }

    /// The orchestrator. Cheap to clone; every clone shares the same settings and hook.
    pub fn build(self) -> Orchestrator<S> {
        Orchestrator::assemble(
            self.saga,
            self.transport,
            self.store,
            self.config,
            self.hook,
        )
    }
}
