//! From the tokens of `#[saga(...)] impl Type { ... }` to a small model: the crate path, the
//! type, the steps in source order (with their options and signatures) and every fn of the
//! block (compensation candidates). Consumes the inert `#[step]` attributes.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, Ident, ImplItem, Item, ItemImpl, Path, PathArguments, Signature, Type};

use crate::attr::{StepOpts, saga_args, step_opts};
use crate::errors::Errors;
use crate::signature::{FnShape, Role, shape};

/// One `#[saga]` impl block.
pub(crate) struct SagaDef {
    /// The crate that re-exports the runtime (`#[saga(crate = ...)]`, default `::sagaflow`).
    pub(crate) krate: Path,
    /// The user's impl block, without its `#[step]` attributes.
    pub(crate) item: ItemImpl,
    /// The saga type's name.
    pub(crate) ty: Ident,
    /// The steps, in source order.
    pub(crate) steps: Vec<Step>,
    /// Every fn of the block, steps included.
    pub(crate) fns: Vec<Signature>,
}

/// One `#[step(...)]` fn.
pub(crate) struct Step {
    /// The `#[step ...]` attribute, for spans.
    pub(crate) attr: Attribute,
    /// Its options.
    pub(crate) opts: StepOpts,
    /// Its signature.
    pub(crate) shape: FnShape,
}

/// Parses the arguments and the item, recording non-fatal problems in `errors`; fails only
/// when the item is not something a saga can be read from.
pub(crate) fn saga_def(
    args: TokenStream,
    item: TokenStream,
    errors: &Errors,
) -> syn::Result<SagaDef> {
    let krate = saga_args(args, errors);
    let mut item = match syn::parse2::<Item>(item)? {
        Item::Impl(item) => item,
        other => return Err(syn::Error::new(item_keyword(&other), NOT_AN_IMPL)),
    };
    if let Some((_, trait_path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            trait_path,
            "`#[saga]` goes on an inherent impl block (`impl Booking { ... }`), not on a trait impl: it implements the `Saga` trait itself",
        ));
    }
    let generic = !item.generics.params.is_empty() || item.generics.where_clause.is_some();
    if generic {
        errors.spanned(
            &item.generics,
            "a saga cannot be generic: its state is stored and shipped as JSON and must be one concrete type; write `impl Booking { ... }`",
        );
    }
    let ty = self_ident(&item.self_ty, !generic, errors);
    let mut steps = Vec::new();
    let mut fns = Vec::new();
    for member in &mut item.items {
        let attrs = member_attrs(member);
        let found = take_step_attrs(attrs);
        let ImplItem::Fn(f) = member else {
            for attr in &found {
                errors.spanned(
                    attr,
                    "`#[step]` goes on an async fn of the `#[saga]` impl block",
                );
            }
            continue;
        };
        fns.push(f.sig.clone());
        let mut found = found.into_iter();
        let Some(attr) = found.next() else { continue };
        for extra in found {
            errors.spanned(
                extra,
                "a fn takes one `#[step(...)]` attribute: merge the keys into the first one",
            );
        }
        steps.push(Step {
            opts: step_opts(&attr, errors),
            shape: shape(&f.sig, Role::Step, errors),
            attr,
        });
    }
    Ok(SagaDef {
        krate,
        item,
        ty,
        steps,
        fns,
    })
}

const NOT_AN_IMPL: &str = "`#[saga]` goes on an inherent impl block whose async fns carry `#[step(...)]`: `#[saga] impl Booking { ... }`";

/// The user's item with the inert `#[step]` attributes removed, to re-emit beside errors.
pub(crate) fn fallback(item: TokenStream) -> TokenStream {
    match syn::parse2::<ItemImpl>(item.clone()) {
        Ok(mut item) => {
            for member in &mut item.items {
                take_step_attrs(member_attrs(member));
            }
            item.into_token_stream()
        }
        Err(_) => item,
    }
}

/// True for `#[step]`, `#[step(...)]`, `#[sagaflow::step(...)]`.
fn is_step(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "step")
}

fn take_step_attrs(attrs: Option<&mut Vec<Attribute>>) -> Vec<Attribute> {
    let Some(attrs) = attrs else {
        return Vec::new();
    };
    let (steps, others) = std::mem::take(attrs).into_iter().partition(is_step);
    *attrs = others;
    steps
}

fn member_attrs(member: &mut ImplItem) -> Option<&mut Vec<Attribute>> {
    match member {
        ImplItem::Fn(f) => Some(&mut f.attrs),
        ImplItem::Const(c) => Some(&mut c.attrs),
        ImplItem::Type(t) => Some(&mut t.attrs),
        ImplItem::Macro(m) => Some(&mut m.attrs),
        _ => None,
    }
}

/// The name of the type in `impl Type`, which must be a plain, non-generic type name.
fn self_ident(ty: &Type, report_arguments: bool, errors: &Errors) -> Ident {
    if let Type::Path(p) = ty
        && let (None, Some(last)) = (&p.qself, p.path.segments.last())
    {
        if report_arguments && !matches!(last.arguments, PathArguments::None) {
            errors.spanned(
                &last.arguments,
                "a saga type cannot take generic arguments: its state is stored as JSON and must be one concrete type",
            );
        }
        return last.ident.clone();
    }
    errors.spanned(ty, "`#[saga]` needs a named type: `impl Booking { ... }`");
    Ident::new("Saga", Span::call_site())
}

/// The span of the keyword of an item that is not an impl block.
fn item_keyword(item: &Item) -> Span {
    use syn::spanned::Spanned;
    match item {
        Item::Struct(s) => s.struct_token.span,
        Item::Enum(e) => e.enum_token.span,
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::Mod(m) => m.mod_token.span,
        other => other.span(),
    }
}
