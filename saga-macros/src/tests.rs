//! Unit tests of the pipeline on `proc_macro2` tokens: helpers, and no panic on odd input.

use quote::quote;

use crate::errors::closest;
use crate::expand_saga;
use crate::validate::camel;

#[test]
fn camel_case_of_step_names() {
    let cases = [
        ("create_order", "CreateOrder"),
        ("a", "A"),
        ("_private", "Private"),
        ("r#type", "Type"),
    ];
    for (name, expected) in cases {
        let ident: syn::Ident = syn::parse_str(name).expect("an identifier");
        assert_eq!(camel(&ident), expected);
    }
}

#[test]
fn suggestions_only_for_close_names() {
    let keys = ["compensate", "pivot", "retriable", "retry", "timeout_ms"];
    assert_eq!(closest("timeout", keys), Some("timeout_ms"));
    assert_eq!(closest("compensation", keys), Some("compensate"));
    assert_eq!(closest("zzz", keys), None);
}

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    let items = [
        quote!(),
        quote!(fn),
        quote!(impl),
        quote!(impl Booking),
        quote!(impl Booking { #[step(pivot pivot)] async fn a(&self) {} }),
        quote!(impl Booking { #[step(compensate)] async fn a(&self) {} }),
        quote!(impl Booking { #[step(compensate = )] async fn a() -> StepResult<u8> {} }),
        quote!(impl Booking { #[step(retry(max_attempts = 99999999999))] async fn a(&self, cx: &SagaContext) -> u8 {} }),
        quote!(impl Booking { #[step(pivot)] async fn a(&self, cx: &SagaContext) -> StepResult {} }),
        quote!(
            impl<'a> Booking<'a> {
                #[step]
                #[step]
                const X: u8 = 1;
            }
        ),
        quote!(impl Booking { #[step(compensate = b)] async fn a(&self, cx: &SagaContext) -> StepResult<u8> {} fn b(self) {} }),
    ];
    for item in items {
        assert!(expand_saga(quote!(), item.clone()).is_err(), "{item}");
    }
    for args in [
        quote!(crate),
        quote!(crate = ),
        quote!(crate = 1),
        quote!(= x),
        quote!(crate = a, crate = b),
    ] {
        let item = quote!(impl B { #[step(pivot)] async fn a(&self, cx: &SagaContext) -> StepResult<u8> {} });
        assert!(expand_saga(args.clone(), item).is_err(), "{args}");
    }
}

#[test]
fn a_valid_saga_expands() {
    let item = quote! {
        impl Booking {
            #[step(compensate = undo)]
            async fn a(&self, cx: &SagaContext, req: &u8) -> StepResult<u8> { Ok(*req) }
            async fn undo(&self, cx: &SagaContext, a: &u8) -> StepResult<()> { Ok(()) }
            #[step(pivot)]
            async fn b(&self, cx: &SagaContext, a: &u8) -> StepResult<u16> { Ok(0) }
        }
    };
    let tokens = expand_saga(quote!(), item)
        .expect("a valid saga")
        .to_string();
    for expected in [
        "enum BookingState",
        "CompensateA",
        "enum __BookingEffect",
        ":: sagaflow :: Saga for Booking",
    ] {
        assert!(
            tokens.contains(expected),
            "missing `{expected}` in {tokens}"
        );
    }
    assert!(
        !tokens.contains("# [step"),
        "the inert #[step] attributes are consumed"
    );
}
