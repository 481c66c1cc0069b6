//! The rules of a saga definition: kinds and their order (compensatable steps, at most one
//! pivot, then retriable steps), compensations, data flow by name, and name clashes in the
//! generated state. Produces the [`Flow`] that `expand` turns into code.

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::format_ident;
use syn::ext::IdentExt;
use syn::{Ident, Type};

use crate::errors::{Errors, did_you_mean, list};
use crate::select::{Instance, Step};
use crate::signature::{FnShape, Param, Role, shape};
use crate::types::check_stored;

/// Richardson's step kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Undone by its compensation.
    Compensatable,
    /// The point of no return.
    Pivot,
    /// After the pivot, retried until it succeeds, never compensated.
    Retriable,
}

/// A checked saga: what the expansion needs.
pub(crate) struct Flow<'a> {
    /// The saga input's name (the first step's data parameter, or `input`).
    pub(crate) input: Ident,
    /// The saga input's type (`()` when the first step takes none).
    pub(crate) input_ty: Type,
    /// The steps in order.
    pub(crate) steps: Vec<FlowStep<'a>>,
}

/// A checked step.
pub(crate) struct FlowStep<'a> {
    /// The parsed step.
    pub(crate) step: &'a Step,
    /// Its kind.
    pub(crate) kind: Kind,
    /// Its state (and effect) variant: the step name in UpperCamelCase.
    pub(crate) variant: Ident,
    /// Its compensation, for a compensatable step.
    pub(crate) compensation: Option<Compensation>,
    /// Its output type.
    pub(crate) output: Type,
}

/// A compensation and its state variant.
pub(crate) struct Compensation {
    /// The compensation's signature.
    pub(crate) shape: FnShape,
    /// `Compensate{Step}`.
    pub(crate) variant: Ident,
}

impl FlowStep<'_> {
    /// The step's name.
    pub(crate) fn name(&self) -> &Ident {
        &self.step.shape.name
    }
}

/// Checks `def`, recording every problem in `errors`.
pub(crate) fn flow<'a>(def: &'a Instance<'_>, errors: &Errors) -> Flow<'a> {
    if def.steps.is_empty() {
        errors.spanned(
            &def.def.item.self_ty,
            format_args!("`#[saga]` found no step in `impl {}`: mark the async fns of the flow with `#[step(...)]`", def.def.ty),
        );
    }
    let (input, input_ty) = input(def, errors);
    let names: Vec<&Ident> = def.steps.iter().map(|s| &s.shape.name).collect();
    let mut steps = Vec::new();
    let mut used_compensations: BTreeMap<String, Ident> = BTreeMap::new();
    for (index, step) in def.steps.iter().enumerate() {
        let name = &step.shape.name;
        if names.iter().take(index).any(|earlier| *earlier == name) {
            errors.spanned(name, format_args!("duplicate step `{name}`: a step of that name comes earlier in the block; step names must be unique"));
        }
        let kind = kind(step, errors);
        retry_bounds(step, errors);
        let compensation = match (&step.opts.compensate, kind) {
            (Some(comp), Kind::Compensatable) => {
                compensation(def, step, &comp.value, &mut used_compensations, errors)
            }
            _ => None,
        };
        if index > 0 {
            data_flow(def, index, &input, errors);
        }
        if let Some(output) = &step.shape.output {
            let what = format!("the output of step `{name}`");
            check_stored(output, &what, &def.def.ty, &def.def.params, errors);
        }
        steps.push(FlowStep {
            step,
            kind,
            variant: format_ident!("{}", camel(name), span = name.span()),
            compensation,
            output: step
                .shape
                .output
                .clone()
                .unwrap_or_else(|| syn::parse_quote!(())),
        });
    }
    order(&steps, errors);
    clashes(&input, &steps, errors);
    Flow {
        input,
        input_ty,
        steps,
    }
}

/// The saga input: the first step's only data parameter, or `input: ()`.
fn input(def: &Instance<'_>, errors: &Errors) -> (Ident, Type) {
    let Some(first) = def.steps.first() else {
        return (
            Ident::new("input", Span::call_site()),
            syn::parse_quote!(()),
        );
    };
    let mut data = first.shape.data.iter();
    let input = match data.next() {
        Some(Param { name, ty }) => match ty {
            Type::Reference(r) => (name.clone(), (*r.elem).clone()),
            other => (name.clone(), other.clone()),
        },
        None => (
            Ident::new("input", Span::call_site()),
            syn::parse_quote!(()),
        ),
    };
    if first
        .shape
        .data
        .first()
        .is_some_and(|p| matches!(p.ty, Type::Reference(_)))
    {
        let what = format!("the saga input `{}`", input.0);
        check_stored(&input.1, &what, &def.def.ty, &def.def.params, errors);
    }
    for extra in data {
        errors.spanned(
            &extra.name,
            format_args!("the first step takes at most one data parameter, the saga input (`{}`); no step has run yet to produce `{}`: put the inputs in one type", input.0, extra.name),
        );
    }
    input
}

/// The step's kind, after checking that exactly one of the three is given.
fn kind(step: &Step, errors: &Errors) -> Kind {
    let o = &step.opts;
    let name = &step.shape.name;
    if let (Some(pivot), Some(_)) = (&o.pivot, &o.compensate) {
        errors.spanned(&pivot.key, format_args!("step `{name}` is marked both `pivot` and `compensate`: a pivot is the point of no return and is never compensated; remove one of them"));
    }
    if let (Some(retriable), Some(_)) = (&o.retriable, &o.compensate) {
        errors.spanned(&retriable.key, format_args!("step `{name}` is marked both `retriable` and `compensate`: a retriable step runs after the pivot and is never compensated; remove one of them"));
    }
    if let (Some(retriable), Some(_)) = (&o.retriable, &o.pivot) {
        errors.spanned(
            &retriable.key,
            format_args!("step `{name}` is marked both `pivot` and `retriable`: choose one"),
        );
    }
    // On a conflict, `pivot` wins over `retriable` over `compensate`, so that the order
    // checks do not report the same mistake again.
    if o.pivot.is_some() {
        Kind::Pivot
    } else if o.retriable.is_some() {
        Kind::Retriable
    } else if o.compensate.is_some() || o.broken {
        Kind::Compensatable
    } else {
        errors.spanned(
            &step.attr,
            format_args!("step `{name}` has no compensation: add `compensate = undo_fn` (an async fn of this block that undoes it), or mark it `pivot` (the point of no return) or `retriable` (after the pivot, retried until it succeeds)"),
        );
        Kind::Compensatable
    }
}

/// `initial_backoff_ms` above `max_backoff_ms` is a contradiction.
fn retry_bounds(step: &Step, errors: &Errors) {
    let o = &step.opts;
    if let (Some(initial), Some(max)) = (&o.initial_backoff_ms, &o.max_backoff_ms)
        && initial.value > max.value
    {
        errors.spanned(
            &initial.key,
            format_args!(
                "`initial_backoff_ms = {}` is above `max_backoff_ms = {}`: the first delay cannot exceed the bound of every delay",
                initial.value, max.value
            ),
        );
    }
}

/// Richardson's order: compensatable steps, at most one pivot, then retriable steps.
fn order(steps: &[FlowStep<'_>], errors: &Errors) {
    let mut pivot: Option<&Ident> = None;
    let mut retriable: Option<&Ident> = None;
    for step in steps {
        let name = step.name();
        let o = &step.step.opts;
        match (step.kind, &o.compensate, &o.pivot, &o.retriable) {
            (Kind::Compensatable, Some(comp), _, _) => {
                if let Some(p) = pivot {
                    errors.spanned(&comp.key, format_args!("compensatable step `{name}` comes after the pivot `{p}`: once the pivot succeeds the saga only goes forward; move `{name}` before `{p}`, or make it `retriable`"));
                } else if let Some(r) = retriable {
                    errors.spanned(&comp.key, format_args!("compensatable step `{name}` comes after the retriable step `{r}`, which is never compensated; move `{name}` before it"));
                }
            }
            (Kind::Pivot, _, Some(key), _) => match pivot {
                Some(p) => errors.spanned(&key.key, format_args!("a saga has at most one pivot, and `{p}` is already the pivot: make `{name}` `retriable` (after the pivot) or compensatable")),
                None => pivot = Some(name),
            },
            (Kind::Retriable, _, _, Some(key)) => {
                if pivot.is_none() {
                    errors.spanned(&key.key, format_args!("retriable step `{name}` must come after the pivot: retriable steps are never compensated, so they only run once the saga can no longer be undone; mark an earlier step `pivot`, or give `{name}` a compensation"));
                }
                retriable = Some(name);
            }
            _ => {}
        }
    }
}

/// Resolves and checks the compensation `comp` of `step`.
fn compensation(
    def: &Instance<'_>,
    step: &Step,
    comp: &Ident,
    used: &mut BTreeMap<String, Ident>,
    errors: &Errors,
) -> Option<Compensation> {
    let name = &step.shape.name;
    if def.steps.iter().any(|s| s.shape.name == *comp) {
        errors.spanned(comp, format_args!("`{comp}` is a step; a fn cannot be both a step and a compensation: give step `{name}` its own compensation fn"));
        return None;
    }
    let Some(sig) = def.fns.iter().find(|f| f.ident == *comp) else {
        let candidates = def
            .fns
            .iter()
            .map(|f| f.ident.to_string())
            .collect::<Vec<_>>();
        let hint = did_you_mean(&comp.to_string(), candidates.iter().map(String::as_str));
        errors.spanned(comp, format_args!("no fn `{comp}` in this `#[saga]` impl block{hint}; add `async fn {comp}(&self, cx: &SagaContext, {name}: &T) -> StepResult<()>` that undoes step `{name}`"));
        return None;
    };
    if let Some(first) = used.insert(comp.to_string(), name.clone()) {
        errors.spanned(comp, format_args!("compensation `{comp}` is already used by step `{first}`: each step needs its own compensation"));
        return None;
    }
    let shape = shape(sig, Role::Compensation(name), None, errors);
    match shape.data.as_slice() {
        [_] => {}
        [] => errors.spanned(&sig.ident, format_args!("compensation `{comp}` receives the output of step `{name}` after the context: `async fn {comp}(&self, cx: &SagaContext, {name}: &T) -> StepResult<()>`")),
        [_, extra @ ..] => {
            for param in extra {
                errors.spanned(&param.name, format_args!("compensation `{comp}` takes one data parameter, the output of step `{name}`; remove `{}`", param.name));
            }
        }
    }
    Some(Compensation {
        variant: format_ident!("Compensate{}", camel(name), span = name.span()),
        shape,
    })
}

/// Every data parameter of step `index` names the input or an earlier step.
fn data_flow(def: &Instance<'_>, index: usize, input: &Ident, errors: &Errors) {
    let Some((this, earlier)) = def.steps.get(..=index).and_then(<[Step]>::split_last) else {
        return;
    };
    let name = &this.shape.name;
    for param in &this.shape.data {
        let wanted = &param.name;
        if wanted == input || earlier.iter().any(|s| s.shape.name == *wanted) {
            continue;
        }
        if wanted == name {
            errors.spanned(wanted, format_args!("step `{name}` cannot use its own output: a step receives the saga input and the outputs of earlier steps"));
        } else if def
            .steps
            .iter()
            .skip(index)
            .any(|s| s.shape.name == *wanted)
        {
            errors.spanned(wanted, format_args!("`{wanted}` is the output of step `{wanted}`, which runs after `{name}` (steps run in source order): move `{wanted}` before `{name}`, or do not use it here"));
        } else {
            let available: Vec<String> = std::iter::once(input)
                .chain(earlier.iter().map(|s| &s.shape.name))
                .map(ToString::to_string)
                .collect();
            let hint = did_you_mean(&wanted.to_string(), available.iter().map(String::as_str));
            errors.spanned(wanted, format_args!("step `{name}` uses `{wanted}`, but no value has that name{hint}; a data parameter is named after the saga input or an earlier step, available here: {}", list(&available)));
        }
    }
}

/// Names that would clash in the generated state enum.
fn clashes(input: &Ident, steps: &[FlowStep<'_>], errors: &Errors) {
    let mut variants: BTreeMap<String, String> = BTreeMap::new();
    variants.insert("Completed".into(), "the final state `Completed`".into());
    variants.insert("Compensated".into(), "the final state `Compensated`".into());
    let mut seen = Vec::new();
    for step in steps {
        let name = step.name();
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if name == input {
            errors.spanned(name, format_args!("step `{name}` has the same name as the saga input `{input}`: the saga state stores both under that name; rename one"));
        }
        let mut generated = vec![step.variant.to_string()];
        generated.extend(step.compensation.as_ref().map(|c| c.variant.to_string()));
        for variant in generated {
            let owner = format!("the state variant of step `{name}`");
            if let Some(other) = variants.insert(variant.clone(), owner) {
                errors.spanned(name, format_args!("step `{name}` generates the state variant `{variant}`, which clashes with {other}; rename the step"));
            }
        }
    }
}

/// `create_order` -> `CreateOrder`.
pub(crate) fn camel(name: &Ident) -> String {
    name.unraw()
        .to_string()
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
