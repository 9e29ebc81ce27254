//! Arguments named by their attributes: `func.func @forward(%arg0: tensor<...> {torch.arg_name
//! = "adj"})` (or `{mlir.name = "adj"}`). Such an argument's tensor is called `adj` in the
//! program and its reports, and `--input adj=FILE`, `--density adj=D` and `--param Dadj_0=N`
//! bind it; its SSA name (`arg0`) keeps working as an alias. Options are rewritten to SSA names
//! here, before anything else reads them, so the later passes know only SSA names.
//!
//! Two arguments of one function with the same name, or a name that is another argument's
//! SSA name, would make `--input` ambiguous: both are one-line errors. A name that is not an
//! identifier of index notation (`input.1`) is made one the way SSA names are (`input_1`,
//! `t3` for a leading digit, deterministic); `--input` takes the name as written.

use std::collections::BTreeMap;

use crate::ast::{Func, Module};
use crate::error::MlirError;
use crate::translate::Options;

/// Name → SSA name of the named arguments of `f`, after checking the names are unambiguous.
fn names_of(f: &Func, file: &str) -> Result<BTreeMap<String, String>, MlirError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for ((ssa, _, span), name) in f.args.iter().zip(&f.arg_names) {
        let Some(name) = name else { continue };
        if name.is_empty() {
            return Err(MlirError::at(file, *span, format!("argument %{ssa} has an empty name (torch.arg_name)")));
        }
        if let Some(other) = out.get(name) {
            return Err(MlirError::at(
                file,
                *span,
                format!("argument %{ssa} is named `{name}` like argument %{other}: argument names must differ"),
            ));
        }
        if let Some((other, _, _)) = f.args.iter().find(|(a, _, _)| a == name && a != ssa) {
            return Err(MlirError::at(
                file,
                *span,
                format!("argument %{ssa} is named `{name}`, the SSA name of argument %{other}: argument names must differ from other arguments' SSA names"),
            ));
        }
        if name != ssa {
            out.insert(name.clone(), ssa.clone());
        }
    }
    Ok(out)
}

/// `opts` with every argument name replaced by its SSA name (`--input`, `--density`, and the
/// `D<arg>_<dim>` parameters of dynamic sizes). Naming one argument both ways is an error.
pub(crate) fn canonical(module: &Module, file: &str, opts: &Options) -> Result<Options, MlirError> {
    let several = module.funcs.len() > 1;
    // Keys as `--input` writes them: `NAME`, or `FUNC.NAME` in a module of several functions.
    let mut alias: BTreeMap<String, String> = BTreeMap::new();
    // Argument name → SSA name over every function, for `D<arg>_<dim>` (which names an
    // argument of any function); `None` where two functions use the name differently.
    let mut param_alias: BTreeMap<String, Option<String>> = BTreeMap::new();
    for f in &module.funcs {
        for (name, ssa) in names_of(f, file)? {
            let entry = param_alias.entry(name.clone()).or_insert_with(|| Some(ssa.clone()));
            if entry.as_ref() != Some(&ssa) {
                *entry = None;
            }
            if several {
                alias.insert(format!("{}.{name}", f.name), format!("{}.{ssa}", f.name));
            } else {
                alias.insert(name, ssa);
            }
        }
    }
    if alias.is_empty() {
        return Ok(opts.clone());
    }
    fn rename<V: Clone>(
        m: &BTreeMap<String, V>,
        (flag, what): (&str, &str),
        file: &str,
        to: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, V>, MlirError> {
        let mut out: BTreeMap<String, V> = BTreeMap::new();
        let mut by: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in m {
            let key = to(k).unwrap_or_else(|| k.clone());
            if let Some(first) = by.insert(key.clone(), k.clone()) {
                return Err(MlirError::whole_file(
                    file,
                    format!("{flag} {first} and {flag} {k} name the same {what} ({key}); give one of them"),
                ));
            }
            out.insert(key, v.clone());
        }
        Ok(out)
    }
    let arg = |k: &str| alias.get(k).cloned();
    let param = |k: &str| {
        let (name, dim) = k.strip_prefix('D')?.rsplit_once('_')?;
        if dim.is_empty() || !dim.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ssa = param_alias.get(name)?.as_ref()?;
        Some(crate::dynamic::param_name(ssa, dim.parse().ok()?))
    };
    Ok(Options {
        inputs: rename(&opts.inputs, ("--input", "argument"), file, arg)?,
        densities: rename(&opts.densities, ("--density", "argument"), file, arg)?,
        params: rename(&opts.params, ("--param", "dynamic dimension"), file, param)?,
        ..opts.clone()
    })
}
