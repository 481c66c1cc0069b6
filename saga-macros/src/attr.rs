//! The arguments of `#[saga(...)]` and `#[step(...)]`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Ident, Lit, Meta, Path, Token};

use crate::errors::{Errors, Keyed, did_you_mean, list, set_once};

/// The keys `#[step(...)]` accepts.
const STEP_KEYS: &[&str] = &["compensate", "pivot", "retriable", "retry", "timeout_ms"];
/// The keys `retry(...)` accepts.
const RETRY_KEYS: &[&str] = &["max_attempts", "initial_backoff_ms", "max_backoff_ms"];

/// `#[saga(crate = path)]`: the path of the crate that re-exports the runtime.
pub(crate) fn saga_args(args: TokenStream, errors: &Errors) -> Path {
    let mut krate: Option<Keyed<Path>> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let path: Path = meta.value()?.parse()?;
            if let Some(key) = meta.path.get_ident() {
                set_once(errors, &mut krate, key, path, "#[saga(...)]");
            }
        } else {
            errors.spanned(
                &meta.path,
                "unknown argument of `#[saga]`; the only one is `crate = path` (the crate that re-exports sagaflow, default `::sagaflow`)",
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        errors.push(error);
    }
    krate
        .map(|k| k.value)
        .unwrap_or_else(|| syn::parse_quote!(::sagaflow))
}

/// The options of one `#[step(...)]`, as written (checked for consistency in `validate`).
#[derive(Default)]
pub(crate) struct StepOpts {
    /// `compensate = fn_name`.
    pub(crate) compensate: Option<Keyed<Ident>>,
    /// `pivot`.
    pub(crate) pivot: Option<Keyed<()>>,
    /// `retriable`.
    pub(crate) retriable: Option<Keyed<()>>,
    /// `retry(...)`, present or not.
    pub(crate) retry: Option<Keyed<()>>,
    /// `retry(max_attempts = n)`.
    pub(crate) max_attempts: Option<Keyed<u32>>,
    /// `retry(initial_backoff_ms = n)`.
    pub(crate) initial_backoff_ms: Option<Keyed<u64>>,
    /// `retry(max_backoff_ms = n)`.
    pub(crate) max_backoff_ms: Option<Keyed<u64>>,
    /// `timeout_ms = n`.
    pub(crate) timeout_ms: Option<Keyed<u64>>,
}

/// Parses one `#[step ...]` attribute, recording every problem in `errors`.
pub(crate) fn step_opts(attr: &Attribute, errors: &Errors) -> StepOpts {
    let mut opts = StepOpts::default();
    match &attr.meta {
        Meta::List(_) => {}
        Meta::Path(_) => return opts,
        Meta::NameValue(nv) => {
            errors.spanned(
                nv,
                "`#[step]` takes a list: `#[step(compensate = undo_fn)]`, `#[step(pivot)]` or `#[step(retriable)]`",
            );
            return opts;
        }
    }
    let result = attr.parse_nested_meta(|meta| {
        let Some(key) = meta.path.get_ident().cloned() else {
            errors.spanned(&meta.path, unknown_key("#[step(...)]", "", STEP_KEYS));
            return skip_value(&meta);
        };
        match key.to_string().as_str() {
            "compensate" => {
                let expr: Expr = meta.value()?.parse()?;
                match expr_ident(&expr) {
                    Some(name) => set_once(errors, &mut opts.compensate, &key, name, "#[step(...)]"),
                    None => errors.spanned(
                        expr,
                        "expected the name of an async fn of this impl block, like `compensate = cancel_order`",
                    ),
                }
            }
            "pivot" => {
                flag(&meta, &key, errors)?;
                set_once(errors, &mut opts.pivot, &key, (), "#[step(...)]");
            }
            "retriable" => {
                flag(&meta, &key, errors)?;
                set_once(errors, &mut opts.retriable, &key, (), "#[step(...)]");
            }
            "retry" => {
                if !meta.input.peek(syn::token::Paren) {
                    errors.spanned(
                        &key,
                        "`retry` takes a list: `retry(max_attempts = 5, initial_backoff_ms = 20, max_backoff_ms = 500)`",
                    );
                    return skip_value(&meta);
                }
                if opts.retry.is_some() {
                    set_once(errors, &mut opts.retry, &key, (), "#[step(...)]");
                    // Still check the second list, into a throwaway.
                    let mut other = StepOpts::default();
                    return meta.parse_nested_meta(|sub| retry_key(&sub, &mut other, errors));
                }
                set_once(errors, &mut opts.retry, &key, (), "#[step(...)]");
                meta.parse_nested_meta(|sub| retry_key(&sub, &mut opts, errors))?;
            }
            "timeout_ms" => {
                if let Some(ms) = int::<u64>(&meta, errors)? {
                    if ms == 0 {
                        errors.spanned(&key, "`timeout_ms` must be at least 1 (milliseconds per attempt); leave it out for no timeout");
                    }
                    set_once(errors, &mut opts.timeout_ms, &key, ms, "#[step(...)]");
                }
            }
            other => {
                errors.spanned(&key, unknown_key("#[step(...)]", other, STEP_KEYS));
                skip_value(&meta)?;
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        errors.push(error);
    }
    opts
}

fn retry_key(meta: &ParseNestedMeta<'_>, opts: &mut StepOpts, errors: &Errors) -> syn::Result<()> {
    let Some(key) = meta.path.get_ident().cloned() else {
        errors.spanned(&meta.path, unknown_key("retry(...)", "", RETRY_KEYS));
        return skip_value(meta);
    };
    match key.to_string().as_str() {
        "max_attempts" => {
            if let Some(n) = int::<u32>(meta, errors)? {
                if n == 0 {
                    errors.spanned(
                        &key,
                        "`max_attempts` counts the first attempt and must be at least 1 (1 = no retry)",
                    );
                }
                set_once(errors, &mut opts.max_attempts, &key, n, "retry(...)");
            }
        }
        "initial_backoff_ms" => {
            if let Some(n) = int::<u64>(meta, errors)? {
                set_once(errors, &mut opts.initial_backoff_ms, &key, n, "retry(...)");
            }
        }
        "max_backoff_ms" => {
            if let Some(n) = int::<u64>(meta, errors)? {
                set_once(errors, &mut opts.max_backoff_ms, &key, n, "retry(...)");
            }
        }
        other => {
            errors.spanned(&key, unknown_key("retry(...)", other, RETRY_KEYS));
            skip_value(meta)?;
        }
    }
    Ok(())
}

/// The message for an unknown key: the valid keys, and the closest one if any.
fn unknown_key(attribute: &str, key: &str, valid: &[&str]) -> String {
    format!(
        "unknown key `{key}` in `{attribute}`{}; valid keys: {}",
        did_you_mean(key, valid.iter().copied()),
        list(valid)
    )
}

/// A key without a value (`pivot`); a value given anyway is an error.
fn flag(meta: &ParseNestedMeta<'_>, key: &Ident, errors: &Errors) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(());
    }
    errors.spanned(
        key,
        format_args!("`{key}` takes no value: write `#[step({key})]`"),
    );
    skip_value(meta)
}

/// An integer literal value (`key = 20`) that fits `T`; `None` after recording an error.
fn int<T>(meta: &ParseNestedMeta<'_>, errors: &Errors) -> syn::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let expr: Expr = meta.value()?.parse()?;
    if let Expr::Lit(lit) = &expr
        && let Lit::Int(int) = &lit.lit
    {
        return match int.base10_parse::<T>() {
            Ok(n) => Ok(Some(n)),
            Err(error) => {
                errors.push(error);
                Ok(None)
            }
        };
    }
    errors.spanned(expr, "expected a non-negative integer literal, like `20`");
    Ok(None)
}

/// Consumes the value of an entry that is rejected anyway (`= expr` or `(...)`).
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// `name` out of an expression that is a plain identifier.
fn expr_ident(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident().cloned(),
        _ => None,
    }
}
