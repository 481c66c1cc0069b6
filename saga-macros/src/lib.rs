//! The `#[saga]` and `#[step]` attributes of sagaflow. Use them through the `sagaflow` crate.
//!
//! # The DSL
//!
//! ```ignore
//! use sagaflow::{saga, SagaContext, StepError, StepResult};
//!
//! pub struct Booking { /* the clients of the upstream services */ }
//!
//! #[saga]
//! impl Booking {
//!     #[step(compensate = cancel_order, retry(max_attempts = 5, initial_backoff_ms = 20, max_backoff_ms = 500), timeout_ms = 2000)]
//!     async fn create_order(&self, cx: &SagaContext, req: &BookingRequest) -> StepResult<Order> { todo!() }
//!     async fn cancel_order(&self, cx: &SagaContext, order: &Order) -> StepResult<()> { todo!() }
//!
//!     #[step(pivot)]
//!     async fn charge(&self, cx: &SagaContext, req: &BookingRequest, create_order: &Order) -> Result<Payment, StepError> { todo!() }
//!
//!     #[step(retriable)]
//!     async fn notify(&self, cx: &SagaContext, charge: &Payment) -> StepResult<Receipt> { todo!() }
//! }
//! ```
//!
//! - `#[saga]` goes on an inherent `impl Type { ... }` block. The type may be a path
//!   (`impl travel::Trip`), have concrete type arguments (`impl Leg<u8>`), or be generic over
//!   type and const parameters (`impl<C: Client> Booking<C>`) as long as the saga's data (its
//!   input and outputs) does not use them: the state is one type for every `Booking<C>`. A
//!   saga type must be `Send + Sync + 'static`, so it takes no lifetime parameter.
//! - `#[saga(...)]` takes optional keys: `name = "travel"`, the saga's stable name for topics
//!   and records, which survives a rename of the type (default: the type's name; `[A-Za-z0-9_-]`
//!   only); `version = 2`, the definition's version (default 1; bump it when steps are added,
//!   removed, reordered or retyped); `crate = path` (default `::sagaflow`), the crate that
//!   re-exports the runtime: the generated code names everything through it, never through
//!   your imports.
//! - Steps are the fns marked `#[step(...)]`; they run in source order. A step is a safe
//!   `async fn` taking `&self` (or `self: &Self`), then the context (`&SagaContext`, any name),
//!   then zero or more data parameters `name: &Type`, and returns `StepResult<T>` /
//!   `Result<T, StepError>`. Any other spelling of the return type (an alias such as
//!   `type R<T> = StepResult<T>`) names the output with `output = T`; the macro does not guess.
//! - Data flows by name. The first step's data parameter (at most one) is the saga INPUT and
//!   its name is the input's name (a first step without one makes the input `input: ()`).
//!   Every later data parameter is named after the input or an EARLIER step, whose output it
//!   receives. rustc checks the types, with deref coercion: a `String` output may be received
//!   as `&str`, a `Vec<T>` as `&[T]`. The input itself is stored, so it is written as the
//!   owned type (`req: &String`, not `&str`).
//! - The input and the outputs are stored in the state: owned (no reference, no lifetime but
//!   `'static`), concrete (no `impl Trait`, no `Self`, no type parameter of the impl), and
//!   `Debug + Serialize + DeserializeOwned + Send + Sync + 'static` (checked by rustc, on your
//!   type).
//! - The saga's output is the last step's output.
//! - Each step is exactly one of: `compensate = fn_name` (compensatable), `pivot` (the point of
//!   no return, never compensated), `retriable` (after the pivot, retried until it succeeds,
//!   never compensated). The order is Richardson's: compensatable steps, then at most one
//!   pivot, then retriable steps (which need a pivot before them).
//! - Other keys: `retry(max_attempts = u32, initial_backoff_ms = u64, max_backoff_ms = u64)`,
//!   every sub-key optional, defaulting to `RetryPolicy::DEFAULT` (compensatable and pivot
//!   steps) or `RetryPolicy::PERSISTENT` (retriable steps); `timeout_ms = u64` per attempt;
//!   `output = T`.
//! - A compensation is a safe `async fn name(&self, cx: &SagaContext, out: &T) ->
//!   StepResult<()>` of the same block, `T` being its step's output. It stays a normal method,
//!   as do fns that are neither steps nor compensations (helpers).
//! - Steps and compensations may carry `#[cfg(...)]`, and a step may be declared through
//!   `#[cfg_attr(predicate, step(...))]`: a fn that is configured out is not in the flow. The
//!   macro cannot evaluate a predicate, so it expands the saga once per combination of the
//!   predicates the flow depends on (at most 5), each under its `#[cfg]`; rustc keeps the one
//!   that holds, and reports the mistakes of that flow only.
//! - Every step future and compensation future must be `Send` (no `std` lock guard held across
//!   an `.await`): rustc says so on the step's name.
//! - `#[saga]` consumes the inert `#[step]` attributes; `#[step]` anywhere else is an error.
//!
//! Every mistake is a compile error on the offending token, all of them in one build.
//!
//! # What it generates
//!
//! Beside the impl block (without its `#[step]` attributes):
//! - the state enum, named by `pub type {Type}State`: `Debug + Serialize + Deserialize` (no
//!   `Clone`, so your types need not be `Clone`), one struct variant per point of the flow,
//!   each carrying the input and every output so far, fields named after them: `{Step}` before
//!   each step, `Completed`, `Compensate{Step}` for each compensatable step, `Compensated`;
//! - the effect enum (one variant per step output, plus `Compensated`), named by the hidden
//!   `__{Type}Effect`;
//! - `impl Saga for Type`. `<Type as Saga>::description().to_mermaid()` draws the flow.
//!
//! `Saga::apply` with an effect that does not belong to the state's cursor returns the state
//! unchanged (the engine never does that). `Saga::rollback` turns a forward state up to the
//! pivot (included) into the compensation of the last compensatable step before it, or
//! `Compensated`; after the pivot the saga only goes forward, so those states, like the
//! compensation and final states, are returned unchanged.
//!
//! Names to avoid: `{Type}State` and `__{Type}Effect` in the module of the impl block (the
//! enums themselves are private to the expansion, so a clash is one error on the alias, on the
//! saga type; a generic saga's enums are `__{Type}State` and `__{Type}Effect`, beside the
//! block); a step must not share its name with the input, and its UpperCamelCase variant must
//! not clash with `Completed`, `Compensated` or another variant. A type takes one `#[saga]`
//! block.

mod attr;
mod cfg;
mod errors;
mod expand;
mod parse;
mod select;
mod signature;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use proc_macro::TokenStream;
use quote::quote;

/// Turns an inherent `impl Type { ... }` block whose async fns carry `#[step(...)]` into a
/// saga: a serialisable state enum and an `impl Saga for Type`. See the crate docs for the DSL.
#[proc_macro_attribute]
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    saga_tokens(args.into(), item.into()).into()
}

/// The whole output of `#[saga]`: the expansion, or the errors beside the user's item.
fn saga_tokens(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match expand_saga(args, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = error.into_compile_error();
            tokens.extend(parse::fallback(item));
            tokens
        }
    }
}

/// Marks a step of a `#[saga]` impl block: `#[step(compensate = undo_fn)]`, `#[step(pivot)]`
/// or `#[step(retriable)]`, plus `retry(...)`, `timeout_ms = n` and `output = T`. Inert:
/// `#[saga]` consumes it; anywhere else it is a compile error.
#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream {
    let mut tokens = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[step]` must be on an async fn inside a `#[saga]` impl block",
    )
    .into_compile_error();
    tokens.extend(proc_macro2::TokenStream::from(item));
    tokens.into()
}

/// parse -> validate -> expand, once per cfg configuration (see `cfg`). Problems of the
/// definition as a whole are one `syn::Error`; those of a configuration are emitted as
/// `compile_error!`s under that configuration's `#[cfg]`, so a build reports exactly the
/// problems of the flow it compiles, all of them.
fn expand_saga(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let errors = errors::Errors::default();
    let def = parse::saga_def(args, item, &errors)?;
    let configs = select::configs(&def, &errors);
    let mut expansions = proc_macro2::TokenStream::new();
    let mut guarded_errors = proc_macro2::TokenStream::new();
    for config in &configs {
        let local = errors::Errors::default();
        let instance = select::instance(&def, config, &local);
        let flow = validate::flow(&instance, &local);
        let guard = config.guard.as_ref().map(|g| quote!(#[cfg(#g)]));
        match (local.finish(), &guard) {
            (Ok(()), _) => expansions.extend(
                expand::saga(&def, &flow)
                    .into_iter()
                    .map(|item| quote!(#guard #item)),
            ),
            (Err(error), None) => errors.push(error),
            (Err(error), Some(_)) => guarded_errors.extend(
                error
                    .into_iter()
                    .map(|e| e.into_compile_error())
                    .map(|e| quote!(#guard #e)),
            ),
        }
    }
    let item = &def.item;
    if let Err(error) = errors.finish() {
        if guarded_errors.is_empty() {
            return Err(error);
        }
        // Keep the errors of each configuration too, under their guards.
        let error = error.into_compile_error();
        return Ok(quote!(#error #guarded_errors #item));
    }
    // The DSL dictates that steps and compensations take their data by reference to the
    // stored value (`&String`, `&Vec<T>`), so clippy's `ptr_arg` advice does not apply.
    Ok(quote!(#[allow(clippy::ptr_arg)] #item #expansions #guarded_errors))
}
