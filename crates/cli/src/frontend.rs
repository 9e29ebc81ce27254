//! Program loading by file kind: tensor index notation (`.ff` and anything else) or MLIR
//! (`.mlir`, through `fuseflow-mlir`), so every command reads both the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Result};

/// `--input NAME=FILE`: binds an MLIR function argument (or tensor constant) to a data file.
pub fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=FILE, got {s}"))?;
    let k = k.trim().trim_start_matches('%');
    if k.is_empty() || v.trim().is_empty() {
        return Err(format!("expected NAME=FILE, got {s}"));
    }
    Ok((k.to_string(), PathBuf::from(v.trim())))
}

/// `--density NAME=D`: the density of a generated MLIR argument (or elided constant).
pub fn parse_density(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=DENSITY, got {s}"))?;
    let d: f64 = v.trim().parse().map_err(|_| format!("density of {k}: {v} is not a number"))?;
    if !(0.0..=1.0).contains(&d) {
        return Err(format!("density of {k} must be in [0, 1], got {d}"));
    }
    Ok((k.trim().trim_start_matches('%').to_string(), d))
}

/// A loaded program and the data bound to its inputs (MLIR constants and `--input` files).
pub struct Loaded {
    /// The checked program.
    pub program: fuseflow_ir::CheckedProgram,
    /// Data replacing inputs' generated data.
    pub bind: Vec<(String, fuseflow_tensor::Coo)>,
}

/// Loads `args.program`: MLIR by extension, else index notation with `--preset`/`--param`.
pub fn load(args: &super::ProgramArgs) -> Result<Loaded> {
    let params: BTreeMap<String, i64> = args.params.iter().cloned().collect();
    if fuseflow_mlir::is_mlir(&args.program) {
        if let Some(p) = &args.preset {
            return Err(anyhow!("--preset {p}: MLIR programs have no presets (change sizes with --param D<size>=N)"));
        }
        let opts = fuseflow_mlir::Options {
            inputs: args.inputs.iter().cloned().collect(),
            densities: args.densities.iter().cloned().collect(),
            params,
            budget: args.limits.mem_limit().map_or(fuseflow_tensor::Budget::UNLIMITED, fuseflow_tensor::Budget::new),
            ..fuseflow_mlir::Options::default()
        };
        let t = fuseflow_mlir::load(&args.program, &opts)?;
        return Ok(Loaded { program: t.program, bind: t.bind });
    }
    if let Some((name, _)) = args.inputs.first().map(|x| (&x.0, ())).or(args.densities.first().map(|x| (&x.0, ()))) {
        return Err(anyhow!(
            "--input/--density {name}: only MLIR programs take them (a program file names its data with `= file(...)` or `= random(...)`)"
        ));
    }
    let overrides = fuseflow_ir::Overrides { preset: args.preset.clone(), params };
    Ok(Loaded { program: fuseflow_ir::load_with(&args.program, &overrides)?, bind: Vec::new() })
}
