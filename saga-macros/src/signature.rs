//! The shape of a step's or compensation's signature: `&self`, the context, the data
//! parameters and the output type.

use syn::{FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Signature, Type};

use crate::errors::{Errors, Keyed, display};

/// What a signature is checked as.
#[derive(Clone, Copy)]
pub(crate) enum Role<'a> {
    /// A `#[step]` fn.
    Step,
    /// The compensation of the named step.
    Compensation(&'a Ident),
}

impl Role<'_> {
    fn describe(&self, name: &Ident) -> String {
        match self {
            Role::Step => format!("step `{name}`"),
            Role::Compensation(step) => format!("compensation `{name}` (of step `{step}`)"),
        }
    }
}

/// A data parameter: `name: &Type`.
pub(crate) struct Param {
    /// The parameter's name: which value it receives.
    pub(crate) name: Ident,
    /// The whole parameter type (`&Type`), for spans.
    pub(crate) ty: Type,
}

/// A step's or compensation's signature, as far as it could be read.
pub(crate) struct FnShape {
    /// The fn's name.
    pub(crate) name: Ident,
    /// The data parameters after the context.
    pub(crate) data: Vec<Param>,
    /// The whole return type, for spans.
    pub(crate) ret: Option<Type>,
    /// `T` of `StepResult<T>` / `Result<T, E>`, or the `output = T` key (steps only).
    pub(crate) output: Option<Type>,
}

/// Reads `sig` as a `role`, recording every problem in `errors`. `output` is the step's
/// `output = T` key, if any.
pub(crate) fn shape(
    sig: &Signature,
    role: Role<'_>,
    output: Option<&Keyed<Type>>,
    errors: &Errors,
) -> FnShape {
    let what = role.describe(&sig.ident);
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            format_args!("{what} cannot be an `unsafe fn`: the saga runtime calls it with no way to uphold a safety contract; make the fn safe and put the `unsafe` block inside it"),
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format_args!("{what} must be an `async fn`: add `async` before `fn`"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format_args!("{what} cannot be generic: its types are stored in the saga state, which must be concrete"),
        );
    }
    let mut inputs = sig.inputs.iter();
    receiver(sig, inputs.next(), &what, errors);
    let mut data = Vec::new();
    match inputs.next() {
        None => errors.at(
            sig.paren_token.span.join(),
            format_args!("{what} takes the saga context after `&self`: `cx: &SagaContext`"),
        ),
        Some(FnArg::Typed(arg)) if is_context(&arg.ty) => {}
        Some(arg) => {
            errors.spanned(
                arg,
                format_args!("{what} takes the saga context after `&self`: `cx: &SagaContext`, then its data parameters"),
            );
            data.extend(param(arg, &what, errors));
        }
    }
    data.extend(inputs.filter_map(|arg| param(arg, &what, errors)));
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            let wanted = match role {
                Role::Step => "`StepResult<T>` (or `Result<T, StepError>`)",
                Role::Compensation(_) => "`StepResult<()>`",
            };
            errors.spanned(
                &sig.ident,
                format_args!("{what} has no return type: it must return {wanted}"),
            );
            None
        }
    };
    let output = match (role, &ret) {
        (Role::Step, _) if output.is_some() => output.map(|k| k.value.clone()),
        (Role::Step, Some(ty)) => output_type(ty, &what, errors),
        _ => None,
    };
    FnShape {
        name: sig.ident.clone(),
        data,
        ret,
        output,
    }
}

fn receiver(sig: &Signature, first: Option<&FnArg>, what: &str, errors: &Errors) {
    match first {
        Some(FnArg::Receiver(r)) if r.colon_token.is_some() => {
            if !is_ref_self(&r.ty) {
                errors.spanned(
                    r,
                    format_args!("{what} takes `&self` (or `self: &Self`): the saga instance is shared by every saga it runs"),
                );
            }
        }
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(FnArg::Receiver(r)) if r.mutability.is_some() && r.reference.is_some() => errors.spanned(
            r,
            format_args!("{what} takes `&self`, not `&mut self`: many sagas run on one instance at once; keep mutable state behind a lock"),
        ),
        Some(FnArg::Receiver(r)) => errors.spanned(
            r,
            format_args!("{what} takes `&self`: the saga instance is shared by every saga it runs"),
        ),
        Some(arg) => errors.spanned(
            arg,
            format_args!("{what} takes `&self` first: `async fn {}(&self, cx: &SagaContext, ...)`", sig.ident),
        ),
        None => errors.at(
            sig.paren_token.span.join(),
            format_args!("{what} takes `&self` and the saga context: `async fn {}(&self, cx: &SagaContext, ...)`", sig.ident),
        ),
    }
}

/// `&Self` (the type of `self: &Self`), with no `mut`.
fn is_ref_self(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => {
            matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
        }
        Type::Group(g) => is_ref_self(&g.elem),
        Type::Paren(p) => is_ref_self(&p.elem),
        _ => false,
    }
}

/// `&SagaContext` (any path ending in `SagaContext`).
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "SagaContext"),
            _ => false,
        },
        _ => false,
    }
}

fn param(arg: &FnArg, what: &str, errors: &Errors) -> Option<Param> {
    let FnArg::Typed(arg) = arg else {
        errors.spanned(arg, format_args!("{what}: `self` must come first"));
        return None;
    };
    let name = match &*arg.pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
            Some(p.ident.clone())
        }
        pat => {
            errors.spanned(
                pat,
                format_args!("{what}: a data parameter must be a plain name, like `order: &Order`; its name says which value it receives (the saga input or an earlier step's output)"),
            );
            None
        }
    };
    match &*arg.ty {
        Type::Reference(r) if r.mutability.is_none() => {}
        Type::Reference(r) => errors.spanned(
            r,
            format_args!("{what}: a data parameter is a shared reference `&T`, not `&mut T`: the saga state keeps its values for later steps and compensations"),
        ),
        ty => errors.spanned(
            ty,
            format_args!("{what}: a data parameter must be a reference: write `&{}`; the saga state keeps its values for later steps and compensations", display(ty)),
        ),
    }
    Some(Param {
        name: name?,
        ty: (*arg.ty).clone(),
    })
}

/// `T` of `StepResult<T>` / `Result<T, E>` (any path ending so). Any other spelling, such as
/// an alias, is not guessed at: the step says `output = T`.
fn output_type(ret: &Type, what: &str, errors: &Errors) -> Option<Type> {
    if let Some(ty) = recognised(ret) {
        return Some(ty);
    }
    let hint = match first_type_argument(ret) {
        Some(t) => format!("`output = {}`", display(&t)),
        None => "`output = T`".to_string(),
    };
    errors.spanned(
        ret,
        format_args!("{what}: cannot read the output type from `{}`: the macro reads `T` out of `StepResult<T>` or `Result<T, StepError>`; when the return type is spelled another way (a type alias), name the output in the attribute: add {hint} to `#[step(...)]`", display(ret)),
    );
    None
}

fn recognised(ret: &Type) -> Option<Type> {
    match ret {
        Type::Group(g) => recognised(&g.elem),
        Type::Paren(p) => recognised(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "StepResult" && last.ident != "Result" {
                return None;
            }
            first_type_argument(ret)
        }
        _ => None,
    }
}

fn first_type_argument(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    match &p.path.segments.last()?.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    }
}
