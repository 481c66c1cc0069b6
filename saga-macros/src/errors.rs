//! Error collection (every problem of one definition in one build), the one duplicate-key
//! helper, and "did you mean" suggestions.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;
use syn::Ident;

/// Collects the errors of one `#[saga]` definition; [`Errors::finish`] combines them.
#[derive(Default)]
pub(crate) struct Errors(RefCell<Option<syn::Error>>);

impl Errors {
    /// Records `error` beside the ones already collected.
    pub(crate) fn push(&self, error: syn::Error) {
        let mut slot = self.0.borrow_mut();
        match slot.as_mut() {
            Some(first) => first.combine(error),
            None => *slot = Some(error),
        }
    }

    /// Records `message` spanned on `tokens` (first to last token).
    pub(crate) fn spanned(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records `message` at `span`.
    pub(crate) fn at(&self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// `Ok` when nothing was recorded, else every recorded error combined.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A value given by a `key = value` (or `key(...)`) entry, with the key for spans.
#[derive(Clone)]
pub(crate) struct Keyed<T> {
    /// The key as written (spans errors about the entry).
    pub(crate) key: Ident,
    /// The parsed value.
    pub(crate) value: T,
}

/// Stores `value` under `key` in `slot`, or records a duplicate-key error on the second
/// occurrence (the first one wins). The one helper every attribute key goes through.
pub(crate) fn set_once<T>(
    errors: &Errors,
    slot: &mut Option<Keyed<T>>,
    key: &Ident,
    value: T,
    attribute: &str,
) {
    if slot.is_some() {
        errors.spanned(
            key,
            format_args!("duplicate key `{key}` in `{attribute}`: give it once"),
        );
    } else {
        *slot = Some(Keyed {
            key: key.clone(),
            value,
        });
    }
}

/// The candidate closest to `name`, if one is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// `" (did you mean `x`?)"` when a candidate is close to `name`, else an empty string.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `` `a`, `b`, `c` `` for a message.
pub(crate) fn list<I: Display>(items: impl IntoIterator<Item = I>) -> String {
    items
        .into_iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A type (or any tokens) as the user would write it in a message: `Vec<Order>`, not
/// `Vec < Order >`.
pub(crate) fn display(tokens: impl ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let glue_before = matches!(prev, Some('<' | '&' | ':' | '(' | '[' | '\''));
            let glue_after = matches!(next, Some('<' | '>' | ',' | ':' | ')' | ']' | ';'));
            if glue_before || glue_after {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `tokens` with every token (and group) spanned at `span`: a path such as the crate's, put
/// inside code spanned on a user's token, keeps rustc's diagnostic on that token.
pub(crate) fn respan(tokens: impl ToTokens, span: Span) -> proc_macro2::TokenStream {
    use proc_macro2::{Group, TokenTree};
    tokens
        .to_token_stream()
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}
