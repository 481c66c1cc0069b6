//! `#[saga(crate = path, name = "travel", version = 2)]`.

use proc_macro2::TokenStream;
use syn::{LitStr, Path};

use super::list::{int, parse_list, skip, value};
use crate::errors::{Errors, Keyed, did_you_mean, list, set_once};

/// The keys `#[saga(...)]` accepts.
const SAGA_KEYS: &[&str] = &["name", "version", "crate"];

/// The arguments of `#[saga(...)]`.
pub(crate) struct SagaArgs {
    /// `crate = path`: the crate that re-exports the runtime (default `::sagaflow`).
    pub(crate) krate: Path,
    /// `name = "..."`: the saga's stable name (default: the type's name).
    pub(crate) name: Option<LitStr>,
    /// `version = n`: the definition's version (default 1).
    pub(crate) version: u32,
}

/// Reads `#[saga(...)]`, recording every problem in `errors`.
pub(crate) fn saga_args(args: TokenStream, errors: &Errors) -> SagaArgs {
    let mut krate: Option<Keyed<Path>> = None;
    let mut name: Option<Keyed<LitStr>> = None;
    let mut version: Option<Keyed<u32>> = None;
    let what = "#[saga(...)]";
    parse_list(args, what, errors, |key, input| {
        match key.to_string().as_str() {
            "crate" => {
                let usage = "crate = ::sagaflow";
                if let Some(path) =
                    value(key, input, usage, errors, |i| i.parse::<Path>(), "a path")?
                {
                    set_once(errors, &mut krate, key, path, what);
                }
            }
            "name" => {
                let usage = "name = \"travel\"";
                if let Some(lit) = value(
                    key,
                    input,
                    usage,
                    errors,
                    |i| i.parse::<LitStr>(),
                    "a string literal",
                )? && check_name(&lit, errors)
                {
                    set_once(errors, &mut name, key, lit, what);
                }
            }
            "version" => {
                let usage = "version = 2";
                if let Some(n) = int::<u32>(key, input, usage, errors)? {
                    if n == 0 {
                        errors.spanned(key, "`version` starts at 1 (the default): bump it when steps are added, removed, reordered or retyped");
                    }
                    set_once(errors, &mut version, key, n, what);
                }
            }
            other => {
                errors.spanned(
                    key,
                    format_args!(
                        "unknown key `{other}` in `#[saga(...)]`{}; valid keys: {} (`name = \"travel\"`: the saga's stable name, default the type name; `version = 2`: the definition's version, default 1; `crate = path`: the crate that re-exports sagaflow, default `::sagaflow`)",
                        did_you_mean(other, SAGA_KEYS.iter().copied()),
                        list(SAGA_KEYS)
                    ),
                );
                skip(input)?;
            }
        }
        Ok(())
    });
    SagaArgs {
        krate: krate
            .map(|k| k.value)
            .unwrap_or_else(|| syn::parse_quote!(::sagaflow)),
        name: name.map(|k| k.value),
        version: version.map_or(1, |k| k.value),
    }
}

/// A saga name names topics and store records: non-empty, `[A-Za-z0-9_-]` only.
fn check_name(lit: &LitStr, errors: &Errors) -> bool {
    let name = lit.value();
    if name.is_empty() {
        errors.spanned(lit, "the saga name is empty: it names the saga's topics and store records; write one like `name = \"travel\"`, or leave `name` out to use the type's name");
        return false;
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        errors.spanned(lit, format_args!("the saga name `{name}` contains {bad:?}: it names topics and store records, so it may only contain ASCII letters, digits, `_` and `-`"));
        return false;
    }
    true
}
