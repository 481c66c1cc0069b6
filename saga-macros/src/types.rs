//! What syntax can tell about a type stored in the saga state (the input and every step
//! output): it is serialised, shipped and resumed on another instance, so it must be owned
//! and concrete. The first problem of a type is reported, on its token; rustc checks the
//! trait bounds (spanned on the same type by `expand::checks`).

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Ident, Lifetime, Type};

use crate::errors::Errors;

/// Checks `ty`, stored in the state as `what` ("the output of step `charge`"), of a saga
/// whose impl has the type and const parameters `params`. True when nothing was reported.
pub(crate) fn check_stored(
    ty: &Type,
    what: &str,
    saga: &Ident,
    params: &[Ident],
    errors: &Errors,
) -> bool {
    if let Some((span, problem)) = unsized_top(ty) {
        let problem = if what.starts_with("the saga input") {
            "write `&String` for `&str`, `&Vec<T>` for `&[T]`"
        } else {
            problem
        };
        errors.at(
            span,
            format_args!(
                "{what} is stored in the saga state and must be an owned, sized type: {problem}"
            ),
        );
        return false;
    }
    let mut finder = Finder {
        params,
        found: None,
    };
    finder.visit_type(ty);
    let Some((tokens, problem)) = finder.found else {
        return true;
    };
    let message = match problem {
        Problem::Reference => format!(
            "{what} is stored in the saga state, which outlives every borrow: write an owned type instead of a reference (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
        ),
        Problem::Lifetime(l) => format!(
            "{what} borrows for `{l}`, but it is stored in the saga state, which outlives every borrow: use an owned type (only `'static` may appear)"
        ),
        Problem::ImplTrait => format!(
            "{what} cannot be an `impl Trait`: it is stored in the saga state (serialised, then resumed on another instance), which needs the concrete type; name it"
        ),
        Problem::Infer => format!(
            "{what} must be written out: `_` cannot stand for a type stored in the saga state"
        ),
        Problem::SelfType => format!(
            "{what}: write the type's name instead of `Self`: it is stored in the saga state enum, outside this impl block"
        ),
        Problem::Param(p) => format!(
            "{what} uses the type parameter `{p}` of `impl {saga}<..>`: the saga state is one concrete type for every `{saga}<..>`, so it cannot depend on `{p}`; give the data a concrete type (keep `{p}` for what the steps call, such as clients)"
        ),
    };
    errors.spanned(tokens, message);
    false
}

/// `str`, `[T]`, `dyn Trait` at the top: types the state cannot own.
fn unsized_top(ty: &Type) -> Option<(Span, &'static str)> {
    match ty {
        Type::Slice(_) => Some((ty.span(), "write `Vec<T>` for `[T]`")),
        Type::TraitObject(_) => {
            Some((ty.span(), "a `dyn Trait` has no size; name a concrete type"))
        }
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
            Some((ty.span(), "write `String` for `str`"))
        }
        Type::Paren(p) => unsized_top(&p.elem),
        Type::Group(g) => unsized_top(&g.elem),
        _ => None,
    }
}

enum Problem {
    Reference,
    Lifetime(String),
    ImplTrait,
    Infer,
    SelfType,
    Param(String),
}

struct Finder<'a> {
    params: &'a [Ident],
    found: Option<(TokenStream, Problem)>,
}

impl Finder<'_> {
    fn report(&mut self, tokens: TokenStream, problem: Problem) {
        if self.found.is_none() {
            self.found = Some((tokens, problem));
        }
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_type(&mut self, ty: &'ast Type) {
        if self.found.is_some() {
            return;
        }
        match ty {
            Type::Reference(r) => self.report(r.to_token_stream(), Problem::Reference),
            Type::ImplTrait(i) => self.report(i.to_token_stream(), Problem::ImplTrait),
            Type::Infer(i) => self.report(i.to_token_stream(), Problem::Infer),
            // Fn pointers and trait objects own nothing of what they mention.
            Type::BareFn(_) | Type::TraitObject(_) | Type::Macro(_) => {}
            Type::Path(p) => {
                if p.qself.is_none()
                    && let Some(first) = p.path.segments.first()
                {
                    if first.ident == "Self" {
                        self.report(first.ident.to_token_stream(), Problem::SelfType);
                    } else if self.params.contains(&first.ident) {
                        self.report(
                            first.ident.to_token_stream(),
                            Problem::Param(first.ident.to_string()),
                        );
                    }
                }
                syn::visit::visit_type(self, ty);
            }
            _ => syn::visit::visit_type(self, ty),
        }
    }

    fn visit_expr(&mut self, expr: &'ast syn::Expr) {
        // An array length or const argument naming a const parameter.
        if let syn::Expr::Path(p) = expr
            && let Some(ident) = p.path.get_ident()
            && self.params.contains(ident)
        {
            self.report(ident.to_token_stream(), Problem::Param(ident.to_string()));
        }
    }

    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        if lifetime.ident != "static" {
            self.report(
                lifetime.to_token_stream(),
                Problem::Lifetime(lifetime.to_string()),
            );
        }
    }
}
