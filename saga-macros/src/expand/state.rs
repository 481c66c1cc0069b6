//! The state enum (serialisable, one variant per point of the flow) and the hidden effect
//! enum, each with a `Debug` impl.
//!
//! Their trait impls are bounded by `for<'__sagaflow> T: Trait` on the user's data types:
//! bounds that hold whenever the types are fit, and that, when one is not, turn the impl off
//! instead of failing inside generated code. The one error is then the check spanned on the
//! user's type (see `checks`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;
use syn::ext::IdentExt;

use super::Cx;

/// `enum __{Type}State { ... }` with its serde derives and `Debug` impl.
pub(super) fn state_enum(cx: &Cx<'_>) -> TokenStream {
    let Cx { krate, state, .. } = cx;
    let steps = &cx.flow.steps;
    let serde = quote!(#krate::__private::serde)
        .to_string()
        .replace(' ', "");
    let mut variants = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let doc = format!("Step `{}` runs next.", step.name());
        variants.push((doc, step.variant.clone(), index));
    }
    let doc = "Every step completed: `finish` yields the output.";
    variants.push((doc.into(), quote::format_ident!("Completed"), steps.len()));
    for (index, step) in steps.iter().enumerate() {
        if let Some(comp) = &step.compensation {
            let doc = format!(
                "A later step failed: compensation `{}` of step `{}` runs next (later steps are already undone).",
                comp.shape.name,
                step.name()
            );
            variants.push((doc, comp.variant.clone(), index + 1));
        }
    }
    let doc = "A step failed and every completed compensatable step has been undone.";
    variants.push((doc.into(), quote::format_ident!("Compensated"), 0));
    let definitions = variants
        .iter()
        .map(|(doc, name, steps)| variant(cx, doc, name, *steps));
    let arms = variants.iter().map(|(_, name, steps)| {
        let fields = cx.names(*steps);
        let label = name.unraw().to_string();
        let names = fields.iter().map(|f| f.unraw().to_string());
        quote! {
            Self::#name { #(#fields),* } => __sagaflow_f.debug_struct(#label)#(.field(#names, #fields))*.finish()
        }
    });
    let types = cx.data_types();
    let ser = bound(&types, &format!("{serde}::Serialize"));
    let de = bound(&types, &format!("{serde}::de::DeserializeOwned"));
    let debug = quote!(::core::fmt::Debug);
    let ty = &cx.self_ty;
    let doc = format!(
        "The state of saga `{}`; named by the public alias `{}State`.",
        crate::errors::display(ty),
        cx.ty
    );
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
        #[serde(crate = #serde, bound(serialize = #ser, deserialize = #de))]
        #[allow(private_interfaces, non_camel_case_types)]
        pub enum #state {
            #(#definitions,)*
        }

        #[allow(unused_lifetimes)]
        impl ::core::fmt::Debug for #state
        where
            #(for<'__sagaflow> #types: #debug,)*
        {
            fn fmt(&self, __sagaflow_f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    #(#arms,)*
                }
            }
        }
    }
}

/// `"for<'__sagaflow> A: Trait, for<'__sagaflow> B: Trait"`, for serde's `bound` attribute.
fn bound(types: &[&syn::Type], trait_path: &str) -> String {
    types
        .iter()
        .map(|ty| format!("for<'__sagaflow> {}: {trait_path}", quote!(#ty)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn variant(cx: &Cx<'_>, doc: &str, name: &Ident, steps: usize) -> TokenStream {
    let input = &cx.flow.input;
    let fields = cx.fields(steps).into_iter().map(|(field, ty)| {
        let doc = if field == input {
            "The saga input.".to_string()
        } else {
            format!("The output of step `{field}`.")
        };
        quote!(#[doc = #doc] #field: #ty)
    });
    quote! {
        #[doc = #doc]
        #name { #(#fields,)* }
    }
}

/// `enum __{Type}Effect { Step(Output), ..., Compensated }` and its `Debug` impl.
pub(super) fn effect_enum(cx: &Cx<'_>) -> TokenStream {
    let Cx { effect, .. } = cx;
    let variants = cx.flow.steps.iter().map(|step| {
        let doc = format!("Step `{}` succeeded with this output.", step.name());
        let variant = &step.variant;
        let output = &step.output;
        quote!(#[doc = #doc] #variant(#output))
    });
    let arms = cx.flow.steps.iter().map(|step| {
        let variant = &step.variant;
        let label = variant.unraw().to_string();
        quote!(Self::#variant(__sagaflow_v) => __sagaflow_f.debug_tuple(#label).field(__sagaflow_v).finish())
    });
    let outputs: Vec<_> = cx.flow.steps.iter().map(|s| &s.output).collect();
    let ty = &cx.self_ty;
    let doc = format!(
        "The result of one transition of saga `{}`; generated, not a public API.",
        crate::errors::display(ty)
    );
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[allow(non_camel_case_types, private_interfaces)]
        pub enum #effect {
            #(#variants,)*
            /// A compensation succeeded.
            Compensated,
        }

        #[allow(unused_lifetimes)]
        impl ::core::fmt::Debug for #effect
        where
            #(for<'__sagaflow> #outputs: ::core::fmt::Debug,)*
        {
            fn fmt(&self, __sagaflow_f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    #(#arms,)*
                    Self::Compensated => __sagaflow_f.write_str("Compensated"),
                }
            }
        }
    }
}
