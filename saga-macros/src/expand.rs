//! From a checked [`Flow`] to code: the state enum, the hidden effect enum, the `Saga` impl
//! and the checks that put rustc's trait errors on the user's tokens. The user's impl block is
//! re-emitted once by `lib.rs`, whatever the configuration.

mod checks;
mod description;
mod state;
mod transitions;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Path, Type};

use crate::parse::SagaDef;
use crate::validate::Flow;

/// What every part of the expansion needs.
pub(crate) struct Cx<'a> {
    /// The crate that re-exports the runtime.
    pub(crate) krate: &'a Path,
    /// The definition.
    pub(crate) def: &'a SagaDef,
    /// The last segment of the saga type's path.
    pub(crate) ty: &'a Ident,
    /// The saga type as written in `impl Type`.
    pub(crate) self_ty: &'a Type,
    /// The state enum: `__{Type}State`, named `{Type}State` by a public alias.
    pub(crate) state: Ident,
    /// The effect enum: `__{Type}Effect`.
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

    /// The saga's name in its description: `#[saga(name = "...")]` or the type's name.
    pub(crate) fn description_name(&self) -> String {
        use syn::ext::IdentExt;
        match &self.def.args.name {
            Some(name) => name.value(),
            None => self.ty.unraw().to_string(),
        }
    }

    /// The input's type and every output type, each once: the types stored in the state.
    pub(crate) fn data_types(&self) -> Vec<&Type> {
        let mut seen = Vec::new();
        let mut types = Vec::new();
        let all =
            std::iter::once(&self.flow.input_ty).chain(self.flow.steps.iter().map(|s| &s.output));
        for ty in all {
            let key = quote!(#ty).to_string();
            if !seen.contains(&key) {
                seen.push(key);
                types.push(ty);
            }
        }
        types
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

/// The whole expansion of a checked saga (without the user's impl block), as items.
///
/// A non-generic saga keeps its enums in a `const _` block and names them through public
/// aliases of `<Type as Saga>::State` / `::Effect`: a user type that has the alias's name then
/// clashes with the alias alone (one error, nothing else breaks), and two `#[saga]` blocks on
/// one type clash only on the aliases and the impl. A generic saga's enums cannot be named
/// through the trait without the type arguments, so they sit beside the impl block.
pub(crate) fn saga(def: &SagaDef, flow: &Flow<'_>) -> Vec<TokenStream> {
    let ty = &def.ty;
    let cx = Cx {
        krate: &def.args.krate,
        def,
        ty,
        self_ty: &def.item.self_ty,
        state: format_ident!("__{}State", ty),
        effect: format_ident!("__{}Effect", ty),
        flow,
    };
    let state = state::state_enum(&cx);
    let effect = state::effect_enum(&cx);
    let saga_impl = transitions::saga_impl(&cx, description::description(&cx));
    let checks = checks::checks(&cx);
    let (state_alias, effect_alias) = aliases(&cx);
    if def.item.generics.params.is_empty() {
        vec![
            state_alias,
            effect_alias,
            quote! {
                const _: () = {
                    #state
                    #effect
                    #saga_impl
                    #checks
                };
            },
        ]
    } else {
        vec![
            state_alias,
            state,
            effect,
            quote! {
                const _: () = {
                    #saga_impl
                    #checks
                };
            },
        ]
    }
}

/// `pub type {Type}State = ...;` and, for a non-generic saga, `pub type __{Type}Effect = ...;`.
/// Their names carry the span of the type in `impl Type`, where a clash is reported.
fn aliases(cx: &Cx<'_>) -> (TokenStream, TokenStream) {
    let Cx {
        krate,
        ty,
        self_ty,
        state,
        effect,
        ..
    } = cx;
    let span = self_ty.span();
    let alias = format_ident!("{}State", ty, span = span);
    let ty_name = crate::errors::display(self_ty);
    // Spanned on the saga type, where rustc reports a clash of the alias's name.
    let krate = crate::errors::respan(krate, span);
    let doc = format!(
        "The state of saga `{ty_name}` between two transitions, generated by `#[saga]`: each \
         variant names what runs next (`{{Step}}`, `Completed`, `Compensate{{Step}}`, \
         `Compensated`) and carries the saga input and every output produced so far, fields \
         named after them. It survives a JSON round trip and resumes on any instance of \
         `{ty_name}`."
    );
    if !cx.def.item.generics.params.is_empty() {
        let state_alias = quote_spanned! {span=>
            #[doc = #doc]
            #[allow(private_interfaces, dead_code)]
            pub type #alias = #state;
        };
        return (state_alias, TokenStream::new());
    }
    let effect_alias = format_ident!("{}", effect, span = span);
    let effect_doc =
        format!("The effect of one transition of saga `{ty_name}`; generated, not a public API.");
    (
        quote_spanned! {span=>
            #[doc = #doc]
            #[allow(private_interfaces, dead_code)]
            pub type #alias = <#self_ty as #krate::Saga>::State;
        },
        quote_spanned! {span=>
            #[doc = #effect_doc]
            #[doc(hidden)]
            #[allow(private_interfaces, non_camel_case_types, dead_code)]
            pub type #effect_alias = <#self_ty as #krate::Saga>::Effect;
        },
    )
}
