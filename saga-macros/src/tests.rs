//! Unit tests of the pipeline on `proc_macro2` tokens: helpers, cfg reading, and no panic on
//! odd input.

use proc_macro2::TokenStream;
use quote::quote;

use crate::cfg::{Atoms, Cond};
use crate::errors::closest;
use crate::saga_tokens;
use crate::validate::camel;

fn errors_of(args: TokenStream, item: TokenStream) -> Vec<String> {
    let out = saga_tokens(args, item).to_string();
    out.split("compile_error !")
        .skip(1)
        .map(|s| s.split('"').nth(1).unwrap_or_default().to_string())
        .collect()
}

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
fn cfg_predicates_are_read_as_formulas() {
    let mut atoms = Atoms::default();
    assert_eq!(atoms.predicate(quote!(any())), Cond::Any(vec![]));
    assert_eq!(atoms.predicate(quote!(all())), Cond::All(vec![]));
    let unix = atoms.predicate(quote!(unix));
    let not_unix = atoms.predicate(quote!(not(unix)));
    assert_eq!(not_unix, Cond::Not(Box::new(unix.clone())));
    let feature = atoms.predicate(quote!(all(unix, feature = "x")));
    let on = |_| true;
    let off = |atom| atom != 0;
    assert!(unix.eval(&on) && !not_unix.eval(&on) && feature.eval(&on));
    assert!(!unix.eval(&off) && not_unix.eval(&off) && !feature.eval(&off));
    assert!(!Cond::Any(vec![]).eval(&on));
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
        quote!(impl Booking { #[step(, ,)] async fn a() -> StepResult<u8> {} }),
        quote!(impl Booking { #[step(1 = 2)] async fn a() -> StepResult<u8> {} }),
        quote!(impl Booking { #[step(a::b = 2)] async fn a() -> StepResult<u8> {} }),
        quote!(impl Booking { #[step[pivot]] async fn a() -> StepResult<u8> {} }),
        quote!(impl Booking { #[step(output = )] async fn a() -> R {} }),
        quote!(impl Booking { #[step(retry(max_attempts = 99999999999))] async fn a(&self, cx: &SagaContext) -> u8 {} }),
        quote!(impl Booking { #[step(pivot)] async fn a(&self, cx: &SagaContext) -> StepResult {} }),
        quote!(impl Booking { #[cfg_attr(unix)] #[cfg_attr()] #[cfg()] #[step(pivot)] async fn a(&self, cx: &SagaContext) -> StepResult {} }),
        quote!(impl Booking { #[cfg_attr(unix, cfg_attr(windows, step(pivot), step(retriable)))] async fn a(&self, cx: &SagaContext) -> StepResult {} }),
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
        assert!(!errors_of(quote!(), item.clone()).is_empty(), "{item}");
    }
    for args in [
        quote!(crate),
        quote!(crate = ),
        quote!(crate = 1),
        quote!(= x),
        quote!(crate = a, crate = b),
        quote!(name = ""),
        quote!(name = "a b"),
        quote!(name = 1),
        quote!(version = 0),
        quote!(version = -1),
        quote!(version = "2"),
        quote!(versions = 2),
    ] {
        let item = quote!(impl B { #[step(pivot)] async fn a(&self, cx: &SagaContext) -> StepResult<u8> {} });
        assert!(!errors_of(args.clone(), item).is_empty(), "{args}");
    }
}

#[test]
fn raw_parser_messages_are_replaced() {
    let item = quote!(impl B { #[step(compensate)] async fn a(&self, cx: &SagaContext) -> StepResult<u8> {} });
    let errors = errors_of(quote!(), item);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("compensate = cancel_order")),
        "{errors:?}"
    );
    let item = quote!(impl B { #[step(pivot timeout_ms = 3)] async fn a(&self, cx: &SagaContext) -> StepResult<u8> {} });
    let errors = errors_of(quote!(), item);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("separate the entries with `,`"),
        "{errors:?}"
    );
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
    let tokens = saga_tokens(quote!(name = "travel", version = 3), item).to_string();
    for expected in [
        "pub type BookingState",
        "enum __BookingState",
        "CompensateA",
        "enum __BookingEffect",
        ":: sagaflow :: Saga for Booking",
        "name : \"travel\"",
        "version : 3u32",
    ] {
        assert!(
            tokens.contains(expected),
            "missing `{expected}` in {tokens}"
        );
    }
    assert!(!tokens.contains("compile_error"), "{tokens}");
    assert!(
        !tokens.contains("# [step"),
        "the inert #[step] attributes are consumed"
    );
}

#[test]
fn a_cfg_on_a_step_expands_per_configuration() {
    let item = quote! {
        impl Booking {
            #[step(pivot)]
            async fn a(&self, cx: &SagaContext, req: &u8) -> StepResult<u8> { Ok(*req) }
            #[cfg(feature = "b")]
            #[step(retriable)]
            async fn b(&self, cx: &SagaContext, a: &u8) -> StepResult<u16> { Ok(0) }
            #[cfg_attr(any(), step(retriable))]
            async fn c(&self, cx: &SagaContext, a: &u8) -> StepResult<u16> { Ok(0) }
        }
    };
    let tokens = saga_tokens(quote!(), item).to_string();
    assert_eq!(
        tokens
            .matches("impl :: sagaflow :: Saga for Booking")
            .count(),
        2,
        "{tokens}"
    );
    assert!(
        tokens.contains("# [cfg (any (all (feature = \"b\")))]"),
        "{tokens}"
    );
    assert!(
        tokens.contains("# [cfg (any (all (not (feature = \"b\"))))]"),
        "{tokens}"
    );
    assert!(
        !tokens.contains("cfg_attr"),
        "an emptied cfg_attr is removed: {tokens}"
    );
}
