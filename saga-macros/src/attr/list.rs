//! `key, key = value, key(...)` lists, parsed with recovery: a malformed entry is reported
//! (never as a raw parser message) and skipped, and the next entries are still read.

use proc_macro2::{TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Lit, Token};

use crate::errors::Errors;

/// Reads the list `tokens`; `entry` is called with each key and must read that key's value.
/// `what` names the list in messages (`#[step(...)]`).
pub(crate) fn parse_list(
    tokens: TokenStream,
    what: &str,
    errors: &Errors,
    mut entry: impl FnMut(&Ident, ParseStream<'_>) -> syn::Result<()>,
) {
    let parser = |input: ParseStream<'_>| {
        while !input.is_empty() {
            if input.peek(Token![,]) {
                errors.at(
                    input.span(),
                    format_args!("empty entry in `{what}`: remove the extra `,`"),
                );
                input.parse::<Token![,]>()?;
                continue;
            }
            let Ok(key) = input.call(Ident::parse_any) else {
                errors.at(
                    input.span(),
                    format_args!("expected a key in `{what}`, like `{}`", example(what)),
                );
                skip(input)?;
                continue;
            };
            if input.peek(Token![::]) {
                errors.spanned(
                    &key,
                    format_args!("keys of `{what}` are plain names, not paths"),
                );
                skip(input)?;
            } else if let Err(error) = entry(&key, input) {
                errors.push(error);
                skip(input)?;
            }
            if input.is_empty() {
                break;
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            } else {
                errors.at(
                    input.span(),
                    format_args!(
                        "unexpected tokens after `{key}` in `{what}`: separate the entries with `,`"
                    ),
                );
                skip(input)?;
                input.parse::<Option<Token![,]>>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
}

fn example(what: &str) -> &'static str {
    if what.starts_with("#[saga") {
        "name = \"travel\""
    } else if what.starts_with("retry") {
        "max_attempts = 5"
    } else {
        "compensate = cancel_order"
    }
}

/// Consumes the rest of the entry, up to (not including) the next `,`.
pub(crate) fn skip(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// A key without a value (`pivot`): a value given anyway is reported and skipped (the key
/// still counts, so that nothing else is reported about it).
pub(crate) fn flag(
    key: &Ident,
    input: ParseStream<'_>,
    usage: &str,
    errors: &Errors,
) -> syn::Result<()> {
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        errors.spanned(key, format_args!("`{key}` takes no value: write `{usage}`"));
        skip(input)?;
    }
    Ok(())
}

/// The `=` of `key = value`. Reports a missing `=` or a missing value with `usage`
/// (`compensate = cancel_order`) and skips the entry; `false` then.
pub(crate) fn eq(
    key: &Ident,
    input: ParseStream<'_>,
    usage: &str,
    errors: &Errors,
) -> syn::Result<bool> {
    if input.peek(Token![=]) {
        let eq: Token![=] = input.parse()?;
        if input.is_empty() || input.peek(Token![,]) {
            errors.spanned(
                eq,
                format_args!("missing value after `{key} =`: write `{usage}`"),
            );
            return Ok(false);
        }
        return Ok(true);
    }
    if input.is_empty() || input.peek(Token![,]) {
        errors.spanned(key, format_args!("`{key}` needs a value: write `{usage}`"));
    } else if input.peek(syn::token::Paren) {
        errors.spanned(
            key,
            format_args!("`{key}` takes `= value`, not a list: write `{usage}`"),
        );
    } else {
        errors.at(
            input.span(),
            format_args!("expected `=` after `{key}`: write `{usage}`"),
        );
    }
    skip(input)?;
    Ok(false)
}

/// The parenthesised list of `key(...)`; anything else is reported with `usage` and skipped.
pub(crate) fn list(
    key: &Ident,
    input: ParseStream<'_>,
    usage: &str,
    errors: &Errors,
) -> syn::Result<Option<TokenStream>> {
    if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        return Ok(Some(content.parse()?));
    }
    errors.spanned(key, format_args!("`{key}` takes a list: write `{usage}`"));
    skip(input)?;
    Ok(None)
}

/// Parses the value with `parse`; a failure is reported as "`key` expects `what`, like
/// `usage`" on the value, and the entry skipped.
pub(crate) fn value<T>(
    key: &Ident,
    input: ParseStream<'_>,
    usage: &str,
    errors: &Errors,
    parse: impl FnOnce(ParseStream<'_>) -> syn::Result<T>,
    what: &str,
) -> syn::Result<Option<T>> {
    if !eq(key, input, usage, errors)? {
        return Ok(None);
    }
    let fork = input.fork();
    match parse(input) {
        Ok(value) => Ok(Some(value)),
        Err(_) => {
            errors.at(
                fork.span(),
                format_args!("`{key}` expects {what}: write `{usage}`"),
            );
            skip(input)?;
            Ok(None)
        }
    }
}

/// An integer literal that fits `T` (`key = 20`); `None` after reporting the problem.
pub(crate) fn int<T>(
    key: &Ident,
    input: ParseStream<'_>,
    usage: &str,
    errors: &Errors,
) -> syn::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    // Written for `u32` and `u64`, whose `type_name` is the keyword users write.
    let Some(expr) = value(
        key,
        input,
        usage,
        errors,
        |i| i.parse::<Expr>(),
        "an integer",
    )?
    else {
        return Ok(None);
    };
    if let Expr::Lit(lit) = &expr
        && let Lit::Int(int) = &lit.lit
    {
        return match int.base10_parse::<T>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => {
                let ty = std::any::type_name::<T>();
                errors.spanned(
                    int,
                    format_args!("`{key}` does not fit its type, `{ty}`: write a smaller number"),
                );
                Ok(None)
            }
        };
    }
    errors.spanned(
        expr,
        format_args!("`{key}` expects a non-negative integer literal: write `{usage}`"),
    );
    Ok(None)
}
