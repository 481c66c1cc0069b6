//! The configurations of a saga (see [`crate::cfg`]) and, for one of them, the fns and steps
//! that exist.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Signature;

use crate::attr::{StepOpts, step_opts};
use crate::cfg::{Cond, MAX_ATOMS, guard};
use crate::errors::Errors;
use crate::parse::SagaDef;
use crate::signature::{FnShape, Role, shape};

/// One configuration: the value of every atom the flow depends on, and the `cfg` predicate
/// that selects it (`None` when the flow depends on no atom).
pub(crate) struct Config {
    /// The atoms the flow depends on.
    used: Vec<usize>,
    /// Their values, in the order of `used`.
    values: Vec<bool>,
    /// `#[cfg(...)]` arguments for this configuration's code, if it has to be guarded.
    pub(crate) guard: Option<TokenStream>,
}

impl Config {
    /// The value of `atom`; atoms the flow does not depend on count as true.
    fn value(&self, atom: usize) -> bool {
        self.used
            .iter()
            .position(|&a| a == atom)
            .is_none_or(|i| self.values.get(i).copied().unwrap_or(true))
    }

    /// True when `cond` holds in this configuration.
    pub(crate) fn holds(&self, cond: &Cond) -> bool {
        cond.eval(&|atom| self.value(atom))
    }
}

/// One `#[step(...)]` fn as it exists in one configuration.
pub(crate) struct Step {
    /// The `#[step(...)]` attribute's tokens, for spans.
    pub(crate) attr: TokenStream,
    /// Its options.
    pub(crate) opts: StepOpts,
    /// Its signature.
    pub(crate) shape: FnShape,
}

/// The saga in one configuration.
pub(crate) struct Instance<'a> {
    /// The definition.
    pub(crate) def: &'a SagaDef,
    /// The steps that exist, in source order.
    pub(crate) steps: Vec<Step>,
    /// Every fn that exists, steps included.
    pub(crate) fns: Vec<&'a Signature>,
}

/// The distinct configurations of `def`: one when no step or compensation has a cfg.
/// Assignments that give the same fns and steps share one configuration.
pub(crate) fn configs(def: &SagaDef, errors: &Errors) -> Vec<Config> {
    let relevant = relevant(def);
    let mut used = Vec::new();
    for member in &relevant {
        member.exists.atoms(&mut used);
        member.steps.iter().for_each(|s| s.cond.atoms(&mut used));
    }
    if let Some(&extra) = used.get(MAX_ATOMS) {
        errors.at(
            def.atoms.span(extra),
            format_args!("the steps and compensations of a saga may depend on at most {MAX_ATOMS} distinct cfg predicates (the saga is expanded once per combination); this is one more: group them, for example behind one cargo feature"),
        );
        return Vec::new();
    }
    let mut groups: Vec<(Vec<bool>, Vec<Vec<bool>>)> = Vec::new();
    for bits in 0u32..(1 << used.len()) {
        let values: Vec<bool> = (0..used.len()).map(|i| bits >> i & 1 == 1).collect();
        let config = Config {
            used: used.clone(),
            values: values.clone(),
            guard: None,
        };
        let key: Vec<bool> = relevant
            .iter()
            .flat_map(|m| {
                std::iter::once(config.holds(&m.exists))
                    .chain(m.steps.iter().map(|s| config.holds(&s.cond)))
                    .collect::<Vec<_>>()
            })
            .collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(values),
            None => groups.push((key, vec![values])),
        }
    }
    let single = groups.len() == 1;
    groups
        .into_iter()
        .filter_map(|(_, assignments)| {
            let values = assignments.first()?.clone();
            let guard = (!single).then(|| {
                let alternatives = assignments.iter().map(|values| {
                    guard(&def.atoms, &used, |atom| {
                        used.iter()
                            .position(|&a| a == atom)
                            .and_then(|i| values.get(i).copied())
                            .unwrap_or(true)
                    })
                });
                quote!(any(#(#alternatives),*))
            });
            Some(Config {
                used: used.clone(),
                values,
                guard,
            })
        })
        .collect()
}

/// The fns whose existence or step attributes shape the flow: steps and compensations.
fn relevant(def: &SagaDef) -> Vec<&crate::parse::Member> {
    let scratch = Errors::default();
    let compensations: Vec<String> = def
        .fns
        .iter()
        .flat_map(|m| &m.steps)
        .filter_map(|s| step_opts(&s.meta, &scratch).compensate)
        .map(|k| k.value.to_string())
        .collect();
    def.fns
        .iter()
        .filter(|m| !m.steps.is_empty() || compensations.contains(&m.sig.ident.to_string()))
        .collect()
}

/// The saga in `config`, recording the problems of its steps in `errors`.
pub(crate) fn instance<'a>(def: &'a SagaDef, config: &Config, errors: &Errors) -> Instance<'a> {
    let mut steps = Vec::new();
    let mut fns = Vec::new();
    for member in &def.fns {
        if !config.holds(&member.exists) {
            continue;
        }
        fns.push(&member.sig);
        let mut active = member.steps.iter().filter(|s| config.holds(&s.cond));
        let Some(attr) = active.next() else {
            continue;
        };
        for extra in active {
            errors.spanned(
                &extra.tokens,
                "a fn takes one `#[step(...)]` attribute: merge the keys into the first one",
            );
        }
        let opts = step_opts(&attr.meta, errors);
        let shape = shape(&member.sig, Role::Step, opts.output.as_ref(), errors);
        steps.push(Step {
            attr: attr.tokens.clone(),
            opts,
            shape,
        });
    }
    Instance { def, steps, fns }
}
