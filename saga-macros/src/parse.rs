//! From the tokens of `#[saga(...)] impl Type { ... }` to a small model: the arguments, the
//! type, and every fn of the block with its `#[step]` attributes and the cfg conditions under
//! which the fn and each attribute exist. Consumes the inert `#[step]` attributes (also out of
//! `cfg_attr`), leaving `cfg` to rustc.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, GenericParam, Ident, ImplItem, Item, ItemImpl, Meta, Signature, Token, Type};

use crate::attr::{SagaArgs, saga_args};
use crate::cfg::{Atoms, Cond};
use crate::errors::Errors;

/// One `#[saga]` impl block.
pub(crate) struct SagaDef {
    /// `#[saga(...)]`.
    pub(crate) args: SagaArgs,
    /// The user's impl block, without its `#[step]` attributes.
    pub(crate) item: ItemImpl,
    /// The last segment of the saga type's path: generated names derive from it.
    pub(crate) ty: Ident,
    /// The fns of the block, in source order.
    pub(crate) fns: Vec<Member>,
    /// The cfg predicates the conditions refer to.
    pub(crate) atoms: Atoms,
    /// The type and const parameters of the impl, which saga data may not use.
    pub(crate) params: Vec<Ident>,
}

/// One fn of the block.
pub(crate) struct Member {
    /// Its signature.
    pub(crate) sig: Signature,
    /// When the fn exists (its `#[cfg]`s).
    pub(crate) exists: Cond,
    /// Its `#[step ...]` attributes, each with the condition under which it applies.
    pub(crate) steps: Vec<StepAttr>,
}

/// One `#[step ...]` attribute of a fn.
pub(crate) struct StepAttr {
    /// When it applies (inside `cfg_attr`).
    pub(crate) cond: Cond,
    /// `step(...)`.
    pub(crate) meta: Meta,
    /// The tokens to span errors about the whole attribute on.
    pub(crate) tokens: TokenStream,
}

/// Parses the arguments and the item, recording non-fatal problems in `errors`; fails only
/// when the item is not something a saga can be read from.
pub(crate) fn saga_def(
    args: TokenStream,
    item: TokenStream,
    errors: &Errors,
) -> syn::Result<SagaDef> {
    let args = saga_args(args, errors);
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
    let ty = self_ident(&item.self_ty, errors);
    let params = params(&item, &ty, errors);
    let mut atoms = Atoms::default();
    let mut fns = Vec::new();
    for member in &mut item.items {
        let is_fn = matches!(member, ImplItem::Fn(_));
        let Some(attrs) = member_attrs(member) else {
            continue;
        };
        let (exists, steps) = take_step_attrs(attrs, &mut atoms);
        match member {
            ImplItem::Fn(f) if is_fn => fns.push(Member {
                sig: f.sig.clone(),
                exists,
                steps,
            }),
            _ => {
                for step in &steps {
                    errors.spanned(
                        &step.tokens,
                        "`#[step]` goes on an async fn of the `#[saga]` impl block",
                    );
                }
            }
        }
    }
    Ok(SagaDef {
        args,
        item,
        ty,
        fns,
        atoms,
        params,
    })
}

const NOT_AN_IMPL: &str = "`#[saga]` goes on an inherent impl block whose async fns carry `#[step(...)]`: `#[saga] impl Booking { ... }`";

/// The user's item with the inert `#[step]` attributes removed, to re-emit beside errors.
pub(crate) fn fallback(item: TokenStream) -> TokenStream {
    match syn::parse2::<ItemImpl>(item.clone()) {
        Ok(mut item) => {
            let mut atoms = Atoms::default();
            for member in &mut item.items {
                if let Some(attrs) = member_attrs(member) {
                    take_step_attrs(attrs, &mut atoms);
                }
            }
            item.into_token_stream()
        }
        Err(_) => item,
    }
}

/// True for `step`, `sagaflow::step`.
fn is_step(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "step")
}

/// Removes the `#[step]` attributes (also those inside `cfg_attr`) from `attrs`; returns the
/// condition under which the item exists and the step attributes with their conditions.
fn take_step_attrs(attrs: &mut Vec<Attribute>, atoms: &mut Atoms) -> (Cond, Vec<StepAttr>) {
    let mut exists = Cond::TRUE;
    let mut steps = Vec::new();
    let mut kept = Vec::new();
    for mut attr in std::mem::take(attrs) {
        let path = attr.path();
        if is_step(path) {
            steps.push(StepAttr {
                cond: Cond::TRUE,
                tokens: attr.to_token_stream(),
                meta: attr.meta,
            });
            continue;
        }
        if path.is_ident("cfg")
            && let Meta::List(list) = &attr.meta
        {
            exists = exists.and(atoms.predicate(list.tokens.clone()));
        } else if path.is_ident("cfg_attr")
            && let Meta::List(list) = &attr.meta
        {
            match cfg_attr(
                list.tokens.clone(),
                Cond::TRUE,
                atoms,
                &mut exists,
                &mut steps,
            ) {
                Some(None) => continue,
                Some(Some(tokens)) => list_tokens(&mut attr, tokens),
                None => {}
            }
        }
        kept.push(attr);
    }
    *attrs = kept;
    (exists, steps)
}

/// Reads `cfg_attr(pred, attrs...)` under `outer`: step attributes go to `steps`, `cfg`s to
/// `exists`. `None` when it cannot be read (left to rustc); `Some(None)` when nothing is
/// left of it; else its new arguments.
fn cfg_attr(
    tokens: TokenStream,
    outer: Cond,
    atoms: &mut Atoms,
    exists: &mut Cond,
    steps: &mut Vec<StepAttr>,
) -> Option<Option<TokenStream>> {
    let args =
        syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, tokens).ok()?;
    let mut args = args.into_iter();
    let predicate = args.next()?;
    let cond = outer.and(atoms.predicate(predicate.to_token_stream()));
    let mut kept = Vec::new();
    let mut changed = false;
    for meta in args {
        if is_step(meta.path()) {
            steps.push(StepAttr {
                cond: cond.clone(),
                tokens: meta.to_token_stream(),
                meta,
            });
            changed = true;
        } else if meta.path().is_ident("cfg")
            && let Meta::List(list) = &meta
        {
            let inner = atoms.predicate(list.tokens.clone());
            *exists = std::mem::replace(exists, Cond::TRUE).and(cond.clone().implies(inner));
            kept.push(meta);
        } else if meta.path().is_ident("cfg_attr")
            && let Meta::List(list) = &meta
        {
            match cfg_attr(list.tokens.clone(), cond.clone(), atoms, exists, steps) {
                Some(None) => changed = true,
                Some(Some(tokens)) => {
                    changed = true;
                    let path = &list.path;
                    kept.push(syn::parse_quote!(#path(#tokens)));
                }
                None => kept.push(meta),
            }
        } else {
            kept.push(meta);
        }
    }
    if !changed {
        return None;
    }
    if kept.is_empty() {
        return Some(None);
    }
    Some(Some(quote!(#predicate, #(#kept),*)))
}

fn list_tokens(attr: &mut Attribute, tokens: TokenStream) {
    if let Meta::List(list) = &mut attr.meta {
        list.tokens = tokens;
    }
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

/// The last segment of the path in `impl path::Type<...>`.
fn self_ident(ty: &Type, errors: &Errors) -> Ident {
    match ty {
        Type::Group(g) => return self_ident(&g.elem, errors),
        Type::Paren(p) => return self_ident(&p.elem, errors),
        _ => {}
    }
    if let Type::Path(p) = ty
        && let (None, Some(last)) = (&p.qself, p.path.segments.last())
    {
        return last.ident.clone();
    }
    errors.spanned(ty, "`#[saga]` needs a named type: `impl Booking { ... }`");
    Ident::new("Saga", Span::call_site())
}

/// The impl's type and const parameters. Lifetime parameters are errors: the saga type is
/// shared by every saga it runs and must be `'static`.
fn params(item: &ItemImpl, ty: &Ident, errors: &Errors) -> Vec<Ident> {
    let mut params = Vec::new();
    for param in &item.generics.params {
        match param {
            GenericParam::Type(t) => params.push(t.ident.clone()),
            GenericParam::Const(c) => params.push(c.ident.clone()),
            GenericParam::Lifetime(l) => errors.spanned(
                &l.lifetime,
                format_args!("a saga type cannot borrow: `{ty}` runs sagas long after any borrow ends (it is shared by every saga it runs, across threads, so it must be `'static`); hold owned values or `Arc`s instead of `{}`", l.lifetime),
            ),
        }
    }
    params
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
