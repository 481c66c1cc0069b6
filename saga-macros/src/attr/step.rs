//! `#[step(compensate = f | pivot | retriable, retry(...), timeout_ms = n, output = T)]`.

use syn::parse::ParseStream;
use syn::{Expr, Ident, Lit, Meta, Type};

use super::list::{eq, flag, int, list, parse_list, skip, value};
use crate::errors::{Errors, Keyed, did_you_mean, list as list_keys, set_once};

/// The keys `#[step(...)]` accepts.
const STEP_KEYS: &[&str] = &[
    "compensate",
    "pivot",
    "retriable",
    "retry",
    "timeout_ms",
    "output",
];
/// The keys `retry(...)` accepts.
const RETRY_KEYS: &[&str] = &["max_attempts", "initial_backoff_ms", "max_backoff_ms"];
const WHAT: &str = "#[step(...)]";

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
    /// `output = T`: the step's output type, for a return type the macro cannot read.
    pub(crate) output: Option<Keyed<Type>>,
    /// A key was unreadable or unknown (already reported): it may have been meant as the
    /// step's kind, so a missing kind is not reported on top.
    pub(crate) broken: bool,
}

/// Parses one `#[step ...]` (the attribute's meta, also when it came out of a `cfg_attr`),
/// recording every problem in `errors`.
pub(crate) fn step_opts(meta: &Meta, errors: &Errors) -> StepOpts {
    let mut opts = StepOpts::default();
    let tokens = match meta {
        Meta::List(list) if matches!(list.delimiter, syn::MacroDelimiter::Paren(_)) => {
            list.tokens.clone()
        }
        Meta::List(list) => {
            errors.spanned(
                &list.path,
                "`#[step]` takes its keys in parentheses: `#[step(pivot)]`",
            );
            opts.broken = true;
            return opts;
        }
        Meta::Path(_) => return opts,
        Meta::NameValue(nv) => {
            errors.spanned(
                nv,
                "`#[step]` takes a list: `#[step(compensate = undo_fn)]`, `#[step(pivot)]` or `#[step(retriable)]`",
            );
            opts.broken = true;
            return opts;
        }
    };
    parse_list(tokens, WHAT, errors, |key, input| {
        step_key(key, input, &mut opts, errors)
    });
    opts
}

fn step_key(
    key: &Ident,
    input: ParseStream<'_>,
    opts: &mut StepOpts,
    errors: &Errors,
) -> syn::Result<()> {
    match key.to_string().as_str() {
        "compensate" => {
            let usage = "compensate = cancel_order";
            if !eq(key, input, usage, errors)? {
                opts.broken = true;
                return Ok(());
            }
            let expr: Expr = match input.parse() {
                Ok(expr) => expr,
                Err(_) => {
                    opts.broken = true;
                    errors.at(input.span(), format_args!("`compensate` expects the name of an async fn of this impl block: write `{usage}`"));
                    return skip(input);
                }
            };
            let Some(name) = expr_ident(&expr) else {
                opts.broken = true;
                let message = match &expr {
                    Expr::Lit(lit) if matches!(lit.lit, Lit::Str(_)) => {
                        "write the compensation's name without quotes, like `compensate = cancel_order`"
                    }
                    _ => {
                        "expected the name of an async fn of this impl block, like `compensate = cancel_order`"
                    }
                };
                errors.spanned(expr, message);
                return Ok(());
            };
            set_once(errors, &mut opts.compensate, key, name, WHAT);
        }
        "pivot" => {
            flag(key, input, "#[step(pivot)]", errors)?;
            set_once(errors, &mut opts.pivot, key, (), WHAT);
        }
        "retriable" => {
            flag(key, input, "#[step(retriable)]", errors)?;
            set_once(errors, &mut opts.retriable, key, (), WHAT);
        }
        "retry" => {
            let usage = "retry(max_attempts = 5, initial_backoff_ms = 20, max_backoff_ms = 500)";
            let Some(tokens) = list(key, input, usage, errors)? else {
                return Ok(());
            };
            if opts.retry.is_some() {
                set_once(errors, &mut opts.retry, key, (), WHAT);
                // Still check the second list, into a throwaway.
                let mut other = StepOpts::default();
                parse_list(tokens, "retry(...)", errors, |k, i| {
                    retry_key(k, i, &mut other, errors)
                });
                return Ok(());
            }
            set_once(errors, &mut opts.retry, key, (), WHAT);
            parse_list(tokens, "retry(...)", errors, |k, i| {
                retry_key(k, i, opts, errors)
            });
        }
        "timeout_ms" => {
            if let Some(ms) = int::<u64>(key, input, "timeout_ms = 2000", errors)? {
                if ms == 0 {
                    errors.spanned(key, "`timeout_ms` must be at least 1 (milliseconds per attempt); leave it out for no timeout");
                }
                set_once(errors, &mut opts.timeout_ms, key, ms, WHAT);
            }
        }
        "output" => {
            let usage = "output = Order";
            if let Some(ty) = value(
                key,
                input,
                usage,
                errors,
                |i| i.parse::<Type>(),
                "the step's output type",
            )? {
                set_once(errors, &mut opts.output, key, ty, WHAT);
            }
        }
        other => {
            errors.spanned(key, unknown_key(WHAT, other, STEP_KEYS));
            opts.broken = true;
            skip(input)?;
        }
    }
    Ok(())
}

fn retry_key(
    key: &Ident,
    input: ParseStream<'_>,
    opts: &mut StepOpts,
    errors: &Errors,
) -> syn::Result<()> {
    const WHAT: &str = "retry(...)";
    match key.to_string().as_str() {
        "max_attempts" => {
            if let Some(n) = int::<u32>(key, input, "max_attempts = 5", errors)? {
                if n == 0 {
                    errors.spanned(
                        key,
                        "`max_attempts` counts the first attempt and must be at least 1 (1 = no retry)",
                    );
                }
                set_once(errors, &mut opts.max_attempts, key, n, WHAT);
            }
        }
        "initial_backoff_ms" => {
            if let Some(n) = int::<u64>(key, input, "initial_backoff_ms = 20", errors)? {
                set_once(errors, &mut opts.initial_backoff_ms, key, n, WHAT);
            }
        }
        "max_backoff_ms" => {
            if let Some(n) = int::<u64>(key, input, "max_backoff_ms = 500", errors)? {
                set_once(errors, &mut opts.max_backoff_ms, key, n, WHAT);
            }
        }
        other => {
            errors.spanned(key, unknown_key(WHAT, other, RETRY_KEYS));
            skip(input)?;
        }
    }
    Ok(())
}

/// The message for an unknown key: the valid keys, and the closest one if any.
fn unknown_key(attribute: &str, key: &str, valid: &[&str]) -> String {
    format!(
        "unknown key `{key}` in `{attribute}`{}; valid keys: {}",
        did_you_mean(key, valid.iter().copied()),
        list_keys(valid)
    )
}

/// `name` out of an expression that is a plain identifier.
fn expr_ident(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident().cloned(),
        _ => None,
    }
}
