//! `#[cfg(...)]` and `#[cfg_attr(..., step(...))]` on the fns of a saga.
//!
//! The macro cannot evaluate a cfg predicate (features, target, `--cfg` flags are rustc's to
//! know), so it lets rustc do it: each leaf predicate (`unix`, `feature = "x"`) is an atom, and
//! the saga is expanded once per truth assignment of the atoms that decide which steps and
//! compensations exist, each expansion (or its errors) under `#[cfg(...)]` of its assignment.
//! Exactly one assignment holds in a build, so the flow rustc compiles is the one whose fns
//! exist. `all`, `any` and `not` are read, so `#[cfg(any())]` costs no atom.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Meta, Token};

/// The most atoms one saga may depend on: `2^MAX_ATOMS` expansions at worst.
pub(crate) const MAX_ATOMS: usize = 5;

/// A condition over cfg atoms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    /// `all(...)`; `all()` is true.
    All(Vec<Cond>),
    /// `any(...)`; `any()` is false.
    Any(Vec<Cond>),
    /// `not(...)`.
    Not(Box<Cond>),
    /// A leaf predicate, by index in [`Atoms`].
    Atom(usize),
}

impl Cond {
    /// Always true.
    pub(crate) const TRUE: Cond = Cond::All(Vec::new());

    /// `self && other`.
    pub(crate) fn and(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::All(a), b) if a.is_empty() => b,
            (a, Cond::All(b)) if b.is_empty() => a,
            (a, b) => Cond::All(vec![a, b]),
        }
    }

    /// `!self || other`.
    pub(crate) fn implies(self, other: Cond) -> Cond {
        Cond::Any(vec![Cond::Not(Box::new(self)), other])
    }

    /// The value when atom `i` has the value `atom(i)`.
    pub(crate) fn eval(&self, atom: &impl Fn(usize) -> bool) -> bool {
        match self {
            Cond::All(c) => c.iter().all(|c| c.eval(atom)),
            Cond::Any(c) => c.iter().any(|c| c.eval(atom)),
            Cond::Not(c) => !c.eval(atom),
            Cond::Atom(i) => atom(*i),
        }
    }

    /// Adds every atom this condition reads to `used`.
    pub(crate) fn atoms(&self, used: &mut Vec<usize>) {
        match self {
            Cond::All(c) | Cond::Any(c) => c.iter().for_each(|c| c.atoms(used)),
            Cond::Not(c) => c.atoms(used),
            Cond::Atom(i) => {
                if !used.contains(i) {
                    used.push(*i);
                }
            }
        }
    }
}

/// The leaf predicates met so far, deduplicated by their tokens.
#[derive(Default)]
pub(crate) struct Atoms(Vec<(String, TokenStream, Span)>);

impl Atoms {
    /// The index of `tokens`, added if new.
    fn intern(&mut self, tokens: TokenStream, span: Span) -> usize {
        let key = tokens.to_string();
        if let Some(i) = self.0.iter().position(|(k, _, _)| *k == key) {
            return i;
        }
        self.0.push((key, tokens, span));
        self.0.len() - 1
    }

    /// The tokens of atom `i`.
    pub(crate) fn tokens(&self, i: usize) -> Option<&TokenStream> {
        self.0.get(i).map(|(_, t, _)| t)
    }

    /// Where atom `i` was first written.
    pub(crate) fn span(&self, i: usize) -> Span {
        self.0.get(i).map_or_else(Span::call_site, |(_, _, s)| *s)
    }

    /// Reads the predicate of `#[cfg(pred)]` (the tokens inside the parentheses).
    pub(crate) fn predicate(&mut self, tokens: TokenStream) -> Cond {
        match syn::parse2::<Meta>(tokens.clone()) {
            Ok(meta) => self.meta(&meta),
            Err(_) => {
                let span = tokens
                    .clone()
                    .into_iter()
                    .next()
                    .map_or_else(Span::call_site, |t| t.span());
                Cond::Atom(self.intern(tokens, span))
            }
        }
    }

    fn meta(&mut self, meta: &Meta) -> Cond {
        use syn::spanned::Spanned;
        if let Meta::List(list) = meta
            && let Some(op) = list.path.get_ident()
            && (op == "all" || op == "any" || op == "not")
            && let Ok(args) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        {
            let mut args: Vec<Cond> = args.iter().map(|m| self.meta(m)).collect();
            if op == "all" {
                return Cond::All(args);
            }
            if op == "any" {
                return Cond::Any(args);
            }
            if args.len() == 1
                && let Some(arg) = args.pop()
            {
                return Cond::Not(Box::new(arg));
            }
        }
        Cond::Atom(self.intern(quote!(#meta), meta.span()))
    }
}

/// `all(a, not(b), ...)`: the atoms `used`, each with the value `value(atom)`.
pub(crate) fn guard(atoms: &Atoms, used: &[usize], value: impl Fn(usize) -> bool) -> TokenStream {
    let parts = used.iter().filter_map(|&atom| {
        let tokens = atoms.tokens(atom)?;
        Some(if value(atom) {
            quote!(#tokens)
        } else {
            quote!(not(#tokens))
        })
    });
    quote!(all(#(#parts),*))
}
