//! `impl Saga for Type`: start, cursor, execute, apply, rollback, finish, input.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Cx;
use crate::validate::Kind;

/// The `Saga` impl, with `description` as the body of `fn description()`.
pub(super) fn saga_impl(cx: &Cx<'_>, description: TokenStream) -> TokenStream {
    let Cx {
        krate,
        self_ty,
        state,
        effect,
        flow,
        ..
    } = cx;
    let (impl_generics, _, where_clause) = cx.def.item.generics.split_for_impl();
    let predicates = where_clause.into_iter().flat_map(|w| w.predicates.iter());
    // Spanned on the saga type, with the header: rustc reports a second impl there.
    let guards = crate::errors::respan(super::checks::guards(cx), self_ty.span());
    let saga_trait = crate::errors::respan(quote!(#krate::Saga), self_ty.span());
    let input_ty = &flow.input_ty;
    let output = flow
        .steps
        .last()
        .map(|s| &s.output)
        .map_or_else(|| quote!(()), |t| quote!(#t));
    let start = start(cx);
    let cursor = cursor(cx);
    let execute = execute(cx);
    let apply = apply(cx);
    let rollback = rollback(cx);
    let finish = finish(cx);
    let input = input(cx);
    // The header is spanned on the saga type, where rustc reports a second impl.
    let header = quote_spanned! {self_ty.span()=>
        #[allow(unused_lifetimes)]
        impl #impl_generics #saga_trait for #self_ty where
    };
    let body = quote! {
            type Input = #input_ty;
            type Output = #output;
            type State = #state;
            type Effect = #effect;

            fn description() -> &'static #krate::SagaDescription {
                #description
            }

            fn start(input: Self::Input) -> Self::State {
                #start
            }

            fn cursor(state: &Self::State) -> #krate::Cursor {
                #cursor
            }

            fn execute<'a>(
                &'a self,
                __sagaflow_cx: &'a #krate::SagaContext,
                __sagaflow_state: &'a Self::State,
            ) -> impl #krate::__private::Future<
                Output = #krate::__private::Result<Self::Effect, #krate::StepError>,
            > + ::core::marker::Send + 'a {
                #execute
            }

            fn apply(__sagaflow_state: Self::State, __sagaflow_effect: Self::Effect) -> Self::State {
                #apply
            }

            fn rollback(__sagaflow_state: Self::State) -> Self::State {
                #rollback
            }

            fn finish(__sagaflow_state: Self::State) -> #krate::__private::Result<Self::Output, Self::State> {
                #finish
            }

            fn input(__sagaflow_state: &Self::State) -> &Self::Input {
                #input
            }
    };
    // The braces too: rustc reports a second impl on the span of the whole header and body.
    let mut body = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, body);
    body.set_span(self_ty.span());
    quote! {
        #header
            #(#predicates,)*
            #guards
        #body
    }
}

fn start(cx: &Cx<'_>) -> TokenStream {
    let state = &cx.state;
    let input = &cx.flow.input;
    match cx.flow.steps.first() {
        Some(first) => {
            let variant = &first.variant;
            quote!(#state::#variant { #input: input })
        }
        None => quote!(#state::Completed { #input: input }),
    }
}

fn cursor(cx: &Cx<'_>) -> TokenStream {
    let Cx { krate, state, .. } = cx;
    let mut arms = Vec::new();
    for (index, step) in cx.flow.steps.iter().enumerate() {
        let variant = &step.variant;
        arms.push(quote!(#state::#variant { .. } => #krate::Cursor::Step(#index)));
        if let Some(comp) = &step.compensation {
            let variant = &comp.variant;
            arms.push(quote!(#state::#variant { .. } => #krate::Cursor::Compensate(#index)));
        }
    }
    quote! {
        match state {
            #(#arms,)*
            #state::Completed { .. } => #krate::Cursor::Completed,
            #state::Compensated { .. } => #krate::Cursor::Compensated,
        }
    }
}

/// One arm per step and per compensation; each calls exactly one user fn. The type
/// annotations and arguments carry the user's spans so that rustc's type errors land on the
/// user's return types and parameters.
fn execute(cx: &Cx<'_>) -> TokenStream {
    let Cx {
        krate,
        state,
        effect,
        ..
    } = cx;
    let ty = cx.description_name();
    let mut arms = Vec::new();
    for step in &cx.flow.steps {
        let variant = &step.variant;
        let name = step.name();
        let shape = &step.step.shape;
        let args: Vec<_> = shape.data.iter().map(|p| &p.name).collect();
        let mut bound = args.clone();
        bound.dedup_by(|a, b| a == b);
        let output = &step.output;
        let span = shape.ret.as_ref().map_or_else(|| name.span(), |r| r.span());
        // The future's `Send` is asserted on the step's name; the output's type on its
        // return type.
        let send = crate::errors::respan(
            quote!(#krate::saga::checks::step_future_must_be_send),
            name.span(),
        );
        let run = quote_spanned! {name.span()=>
            let __sagaflow_raw = #send(
                self.#name(__sagaflow_cx, #(#args),*),
            ).await;
        };
        let result = crate::errors::respan(quote!(#krate::__private::Result), span);
        let error = crate::errors::respan(quote!(#krate::StepError), span);
        let call = quote_spanned! {span=>
            #run
            let __sagaflow_out: #result<#output, #error> = __sagaflow_raw;
        };
        arms.push(quote! {
            #state::#variant { #(#bound,)* .. } => {
                #call
                __sagaflow_out.map(#effect::#variant)
            }
        });
        if let Some(comp) = &step.compensation {
            let variant = &comp.variant;
            let comp_name = &comp.shape.name;
            let arg_span = comp
                .shape
                .data
                .first()
                .map_or_else(|| comp_name.span(), |p| p.ty.span());
            let arg = quote_spanned!(arg_span=> __sagaflow_output);
            let ret_span = comp
                .shape
                .ret
                .as_ref()
                .map_or_else(|| comp_name.span(), |r| r.span());
            let send = crate::errors::respan(
                quote!(#krate::saga::checks::step_future_must_be_send),
                comp_name.span(),
            );
            let run = quote_spanned! {comp_name.span()=>
                let __sagaflow_raw = #send(
                    self.#comp_name(__sagaflow_cx, #arg),
                ).await;
            };
            let result = crate::errors::respan(quote!(#krate::__private::Result), ret_span);
            let error = crate::errors::respan(quote!(#krate::StepError), ret_span);
            let call = quote_spanned! {ret_span=>
                #run
                let __sagaflow_out: #result<(), #error> = __sagaflow_raw;
            };
            arms.push(quote! {
                #state::#variant { #name: __sagaflow_output, .. } => {
                    #call
                    __sagaflow_out.map(|()| #effect::Compensated)
                }
            });
        }
    }
    let completed = format!("saga `{ty}` is completed: there is no step left to execute");
    let compensated = format!("saga `{ty}` is compensated: there is no step left to execute");
    quote! {
        async move {
            match __sagaflow_state {
                #(#arms)*
                #state::Completed { .. } => #krate::__private::Result::Err(#krate::StepError::fatal(#completed)),
                #state::Compensated { .. } => #krate::__private::Result::Err(#krate::StepError::fatal(#compensated)),
            }
        }
    }
}

/// Forward effects move the state to the next step (or `Completed`); a compensation's
/// effect moves it to the previous compensation (or `Compensated`). An effect that does not
/// belong to the state's cursor leaves the state unchanged.
fn apply(cx: &Cx<'_>) -> TokenStream {
    let Cx { state, effect, .. } = cx;
    let steps = &cx.flow.steps;
    let mut arms = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let variant = &step.variant;
        let name = step.name();
        let before = cx.names(index);
        let after = cx.names(index + 1);
        let next = steps
            .get(index + 1)
            .map_or_else(|| quote::format_ident!("Completed"), |n| n.variant.clone());
        arms.push(quote! {
            (#state::#variant { #(#before),* }, #effect::#variant(#name)) => #state::#next { #(#after),* }
        });
        if let Some(comp) = &step.compensation {
            let variant = &comp.variant;
            let (names, target) = cx.undo_before(index);
            arms.push(quote! {
                (#state::#variant { #(#names,)* .. }, #effect::Compensated) => #target
            });
        }
    }
    quote! {
        match (__sagaflow_state, __sagaflow_effect) {
            #(#arms,)*
            (__sagaflow_state, _) => __sagaflow_state,
        }
    }
}

/// A forward state up to the pivot (included) becomes the compensation of the last
/// compensatable step before it, or `Compensated`. After the pivot the saga only goes
/// forward: those states, like every other, are returned unchanged.
fn rollback(cx: &Cx<'_>) -> TokenStream {
    let state = &cx.state;
    let steps = &cx.flow.steps;
    let last = steps
        .iter()
        .position(|s| s.kind == Kind::Pivot)
        .unwrap_or(steps.len());
    let arms = steps
        .iter()
        .take(last + 1)
        .enumerate()
        .map(|(index, step)| {
            let variant = &step.variant;
            let (names, target) = cx.undo_before(index);
            quote!(#state::#variant { #(#names,)* .. } => #target)
        });
    quote! {
        match __sagaflow_state {
            #(#arms,)*
            __sagaflow_state => __sagaflow_state,
        }
    }
}

fn finish(cx: &Cx<'_>) -> TokenStream {
    let state = &cx.state;
    let last = match cx.flow.steps.last() {
        Some(step) => step.name(),
        None => return quote!(::core::result::Result::Err(__sagaflow_state)),
    };
    quote! {
        match __sagaflow_state {
            #state::Completed { #last, .. } => ::core::result::Result::Ok(#last),
            __sagaflow_state => ::core::result::Result::Err(__sagaflow_state),
        }
    }
}

fn input(cx: &Cx<'_>) -> TokenStream {
    let state = &cx.state;
    let input = &cx.flow.input;
    let mut variants: Vec<_> = cx.flow.steps.iter().map(|s| &s.variant).collect();
    variants.extend(
        cx.flow
            .steps
            .iter()
            .filter_map(|s| s.compensation.as_ref().map(|c| &c.variant)),
    );
    quote! {
        match __sagaflow_state {
            #(#state::#variants { #input, .. } => #input,)*
            #state::Completed { #input, .. } | #state::Compensated { #input, .. } => #input,
        }
    }
}
