//! From a checked [`Flow`] to code: the user's impl block re-emitted, the state enum, the
//! hidden effect enum and the `Saga` impl.

mod description;
mod state;
mod transitions;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, Path, Type};

use crate::parse::SagaDef;
use crate::validate::Flow;

/// What every part of the expansion needs.
pub(crate) struct Cx<'a> {
    /// The crate that re-exports the runtime.
    pub(crate) krate: &'a Path,
    /// The saga type.
    pub(crate) ty: &'a Ident,
    /// `{Type}State`.
    pub(crate) state: Ident,
    /// `__{Type}Effect`.
    pub(crate) effect: Ident,
    /// The checked flow.
    pub(crate) flow: &'a Flow<'a>,
}

impl Cx<'_> {
    /// The input and the outputs of the first `steps` steps: the fields of a state.
    pub(crate) fn fields(&self, steps: usize) -> Vec<(&Ident, &Type)> {
        std::iter::once((&self.flow.input, &self.flow.input_ty))
            .chain(
                self.flow
                    .steps
                    .iter()
                    .take(steps)
                    .map(|s| (s.name(), &s.output)),
            )
            .collect()
    }

    /// The names of [`Cx::fields`].
    pub(crate) fn names(&self, steps: usize) -> Vec<&Ident> {
        self.fields(steps)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// The state once every compensatable step before `index` has been considered for undo:
    /// the compensation of the last compensatable step before `index`, or `Compensated`.
    /// Built from bindings named after the fields.
    pub(crate) fn undo_before(&self, index: usize) -> (Vec<&Ident>, TokenStream) {
        let state = &self.state;
        let last = self
            .flow
            .steps
            .iter()
            .take(index)
            .enumerate()
            .filter_map(|(i, s)| s.compensation.as_ref().map(|c| (i, c)))
            .next_back();
        match last {
            Some((i, comp)) => {
                let names = self.names(i + 1);
                let variant = &comp.variant;
                let tokens = quote!(#state::#variant { #(#names),* });
                (names, tokens)
            }
            None => {
                let input = &self.flow.input;
                (vec![input], quote!(#state::Compensated { #input }))
            }
        }
    }
}

/// The whole expansion of a checked saga.
pub(crate) fn saga(def: &SagaDef, flow: &Flow<'_>) -> TokenStream {
    let cx = Cx {
        krate: &def.krate,
        ty: &def.ty,
        state: format_ident!("{}State", def.ty),
        effect: format_ident!("__{}Effect", def.ty),
        flow,
    };
    let item = &def.item;
    let state = state::state_enum(&cx);
    let effect = state::effect_enum(&cx);
    let saga_impl = transitions::saga_impl(&cx, description::description(&cx));
    // The DSL dictates that steps and compensations take their data by reference to the
    // stored value (`&String`, `&Vec<T>`), so clippy's `ptr_arg` advice does not apply.
    quote! {
        #[allow(clippy::ptr_arg)]
        #item
        #state
        #effect
        #saga_impl
    }
}
