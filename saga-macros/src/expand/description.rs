//! The static `SagaDescription` returned by `Saga::description`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use super::Cx;
use crate::validate::Kind;

/// The body of `fn description()`: a `static` and a reference to it.
pub(super) fn description(cx: &Cx<'_>) -> TokenStream {
    let krate = cx.krate;
    let name = cx.description_name();
    let version = cx.def.args.version;
    let input = cx.flow.input.unraw().to_string();
    let steps = cx.flow.steps.iter().map(|step| {
        let opts = &step.step.opts;
        let name = step.name().unraw().to_string();
        let kind = match step.kind {
            Kind::Compensatable => quote!(Compensatable),
            Kind::Pivot => quote!(Pivot),
            Kind::Retriable => quote!(Retriable),
        };
        let compensation = match &step.compensation {
            Some(comp) => {
                let comp = comp.shape.name.unraw().to_string();
                quote!(::core::option::Option::Some(#comp))
            }
            None => quote!(::core::option::Option::None),
        };
        let uses = step
            .step
            .shape
            .data
            .iter()
            .map(|p| p.name.unraw().to_string());
        let base = match step.kind {
            Kind::Retriable => quote!(#krate::RetryPolicy::PERSISTENT),
            _ => quote!(#krate::RetryPolicy::DEFAULT),
        };
        let millis = |ms: u64| quote!(#krate::__private::Duration::from_millis(#ms));
        let mut fields = Vec::new();
        if let Some(n) = &opts.max_attempts {
            let n = n.value;
            fields.push(quote!(max_attempts: #n));
        }
        if let Some(ms) = &opts.initial_backoff_ms {
            let d = millis(ms.value);
            fields.push(quote!(initial_backoff: #d));
        }
        if let Some(ms) = &opts.max_backoff_ms {
            let d = millis(ms.value);
            fields.push(quote!(max_backoff: #d));
        }
        let retry = match fields.len() {
            0 => base,
            3 => quote!(#krate::RetryPolicy { #(#fields),* }),
            _ => quote!(#krate::RetryPolicy { #(#fields,)* ..#base }),
        };
        let timeout = match &opts.timeout_ms {
            Some(ms) => {
                let d = millis(ms.value);
                quote!(::core::option::Option::Some(#d))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #krate::StepDescription {
                name: #name,
                kind: #krate::StepKind::#kind,
                compensation: #compensation,
                uses: &[#(#uses),*],
                retry: #retry,
                timeout: #timeout,
            }
        }
    });
    quote! {
        static DESCRIPTION: #krate::SagaDescription = #krate::SagaDescription {
            name: #name,
            version: #version,
            input: #input,
            steps: &[#(#steps),*],
        };
        &DESCRIPTION
    }
}
