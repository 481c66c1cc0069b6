//! Checks that put rustc's trait errors on the user's tokens, and the bounds that keep the
//! generated impls from failing a second time on the same problem.
//!
//! `checks` is a never-called fn that asserts, spanned on the user's type, that the saga type
//! is `Send + Sync + 'static` and that the input and every output can be stored in the state.
//! The `Saga` impl (and the enums' impls) are bounded by the same facts written as
//! `for<'__sagaflow> T: Trait`: such a bound is not "trivial", so rustc does not reject it when
//! false, it just leaves the impl unusable, and the assertion is the only error.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Cx;
use crate::errors::respan;

/// The never-called fn holding the spanned assertions.
pub(super) fn checks(cx: &Cx<'_>) -> TokenStream {
    let Cx { krate, self_ty, .. } = cx;
    let (impl_generics, _, where_clause) = cx.def.item.generics.split_for_impl();
    let checks = quote!(#krate::saga::checks);
    let span = self_ty.span();
    let path = respan(&checks, span);
    let saga = quote_spanned! {span=>
        #path::saga_type_is_shared_across_threads::<#self_ty>();
    };
    let data = cx.data_types().into_iter().map(|ty| {
        let span = ty.span();
        let path = respan(&checks, span);
        quote_spanned! {span=>
            #path::stored_in_the_saga_state::<#ty>();
        }
    });
    quote! {
        #[allow(dead_code, clippy::extra_unused_type_parameters)]
        fn __sagaflow_checks #impl_generics () #where_clause {
            #saga
            #(#data)*
        }
    }
}

/// The bounds of the `Saga` impl beyond the user's own where clause.
pub(super) fn guards(cx: &Cx<'_>) -> TokenStream {
    let Cx { krate, self_ty, .. } = cx;
    let serde = quote!(#krate::__private::serde);
    let types = cx.data_types();
    quote! {
        for<'__sagaflow> #self_ty: ::core::marker::Send + ::core::marker::Sync + 'static,
        #(
            for<'__sagaflow> #types: #serde::Serialize
                + #serde::de::DeserializeOwned
                + ::core::fmt::Debug
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static,
        )*
    }
}
