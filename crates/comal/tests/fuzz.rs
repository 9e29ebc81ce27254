//! Fuzzing: arbitrary bytes, byte-mutated and structurally mutated valid encodings (ALU chains
//! among them) never make decoding or importing panic; whatever imports also simulates without
//! a panic. Inputs that once crashed are kept under `tests/data/` and replayed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use fuseflow_comal::proto::ComalGraph;
use fuseflow_sim::{simulate, SimConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

/// Valid encodings with their data directories: several examples, one with a range.
fn bases() -> Vec<(Vec<u8>, TmpDir)> {
    let mut out = Vec::new();
    let mut add = |p: &fuseflow_ir::CheckedProgram, base: &Path, tag: &str| {
        let tensors = fuseflow_ir::load_inputs(p, base, 0).unwrap();
        let k = fuseflow_compiler::lower_statement(p, 0, None, &Default::default()).unwrap();
        let dir = TmpDir::new(tag);
        fuseflow_comal::export_dir(&k.graph, &tensors, dir.path()).unwrap();
        out.push((std::fs::read(dir.path().join("graph.bin")).unwrap(), dir));
    };
    for name in ["spmv.ff", "sddmm.ff", "spmm_gustavson.ff", "add.ff", "ttm.ff"] {
        let path = examples_dir().join(name);
        add(&load(&path), path.parent().unwrap(), name);
    }
    let src = "input A[4, 3] dcsr = random(density=0.5, seed=1)\ninput b[3] dcsr = random(density=0.5, seed=2)\noutput X[4, 3] dense\nX(i,j) = 2 - A(i,j) + b(j)\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "r.ff", &BTreeMap::new()).unwrap()).unwrap();
    add(&p, Path::new("."), "range");
    // ALU chains (the sparse exponentials) and the stand-ins of a max over nonzeros.
    let src = "input A[4, 3] dcsr = random(density=0.5, seed=1)\ninput b[4] dense = random(density=1, seed=2)\noutput X[4, 3] dcsr\nX(i,j) = expsubnz(A(i,j), b(i)) + expnz(A(i,j))\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "c.ff", &BTreeMap::new()).unwrap()).unwrap();
    add(&p, Path::new("."), "chain");
    let src = "input A[4, 3] dcsr = random(density=0.5, seed=1)\noutput y[4] dense\ny(i) = maxnz(j, A(i,j))\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "m.ff", &BTreeMap::new()).unwrap()).unwrap();
    add(&p, Path::new("."), "maxnz");
    // Parallel lanes (forks and joins, a crd fork the importer rebuilds).
    let src = "input A[4, 3] csr = random(density=0.5, seed=1)\ninput B[3, 2] csr = random(density=0.5, seed=2)\noutput X[4, 2] csr\nX(i,j) = A(i,k) * B(k,j)\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "l.ff", &BTreeMap::new()).unwrap()).unwrap();
    let tensors = fuseflow_ir::load_inputs(&p, Path::new("."), 0).unwrap();
    let k = fuseflow_compiler::lower_statement(&p, 0, None, &Default::default()).unwrap();
    let par = fuseflow_compiler::par::parallelize(&k.graph, "i", 2).unwrap();
    let dir = TmpDir::new("lanes");
    fuseflow_comal::export_dir(&par, &tensors, dir.path()).unwrap();
    out.push((std::fs::read(dir.path().join("graph.bin")).unwrap(), dir));
    out
}

/// Decodes and imports; an imported graph is simulated under a small cycle limit.
fn exercise(bytes: &[u8], dir: &Path) -> Result<(), TestCaseError> {
    let c = match fuseflow_comal::decode_comal(bytes, "fuzz") {
        Ok(c) => c,
        Err(e) => {
            prop_assert!(!e.to_string().contains('\n'));
            return Ok(());
        }
    };
    exercise_graph(&c, dir)
}

fn exercise_graph(c: &ComalGraph, dir: &Path) -> Result<(), TestCaseError> {
    match fuseflow_comal::from_comal(c, dir) {
        Ok((g, tensors)) => {
            if std::env::var("COMAL_FUZZ_STATS").is_ok() {
                eprintln!("imported {} nodes", g.nodes.len());
            }
            prop_assert!(g.verify().is_ok());
            let cfg = SimConfig { max_cycles: 1 << 20, channel_capacity: Some(64), ..SimConfig::default() };
            let _ = simulate(&g, &tensors, &cfg);
        }
        Err(e) => prop_assert!(!e.to_string().contains('\n'), "{}", e),
    }
    Ok(())
}

/// `cases` per fuzz test, scaled by `COMAL_FUZZ_SCALE` (e.g. 50 for a long hunt).
fn config(cases: u32) -> Config {
    let scale: u32 = std::env::var("COMAL_FUZZ_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    Config { cases: cases.saturating_mul(scale), failure_persistence: None, ..Config::default() }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let (_, dir) = bases().remove(0);
    let mut runner = TestRunner::new(config(512));
    runner.run(&prop::collection::vec(any::<u8>(), 0..300), |bytes| exercise(&bytes, dir.path())).unwrap();
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| ByteEdit::Set(p, b)),
        2 => (any::<usize>(), 0u8..16).prop_map(|(p, b)| ByteEdit::Set(p, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| ByteEdit::Insert(p, b)),
        1 => any::<usize>().prop_map(ByteEdit::Delete),
        1 => any::<usize>().prop_map(ByteEdit::Truncate),
    ]
}

#[test]
fn byte_mutated_encodings_never_panic() {
    let bases = bases();
    let mut runner = TestRunner::new(config(600));
    let strategy = (0..bases.len(), prop::collection::vec(byte_edit(), 1..6));
    runner
        .run(&strategy, |(which, edits)| {
            let (base, dir) = &bases[which];
            let mut b = base.clone();
            for e in edits {
                let n = b.len().max(1);
                match e {
                    ByteEdit::Set(p, x) if !b.is_empty() => b[p % n] = x,
                    ByteEdit::Insert(p, x) => b.insert(p % (b.len() + 1), x),
                    ByteEdit::Delete(p) if !b.is_empty() => {
                        b.remove(p % n);
                    }
                    ByteEdit::Truncate(p) => b.truncate(p % n),
                    _ => {}
                }
            }
            exercise(&b, dir.path())
        })
        .unwrap();
}

/// Names carrying our metadata, valid and not, to graft onto operations.
const NAMES: &[&str] = &[
    "",
    "fiberlookup;level=5",
    "fiberlookup;level=0",
    "fiberlookup;range=3",
    "joiner;group=1;part=1;payloads=2,1",
    "joiner;group=1;part=0;payloads=2,1",
    "joiner;payloads=0,0",
    "joiner;payloads=1,0",
    "repeat;sig=repsig",
    "repeat;repsig=3;sig_label=x",
    "repeat;repsig=0",
    "crddrop;inner=val",
    "crddrop;inner=ref",
    "alu;op=ssub;first=1",
    "alu;op=relu",
    "alu;op=gelu",
    "alu;op=erf",
    "alu;group=5;op=expsubnz;part=0",
    "alu;group=5;op=expsubnz;part=2",
    "alu;group=5;op=expsubnz;part=4",
    "alu;group=7;op=expnz;part=1",
    "alu;group=5;op=add;part=0",
    "alu;op=zero_to_neginf",
    "alu;op=neginf_to_zero",
    "func;op=rdiv;first=1;scalar=NaN",
    "spacc;op=max",
    "locate;tensor=x;level=9;size=0;dim=7",
    "locate;tensor=A;level=1;size=60;dim=1",
    "fiberwrite;level=7",
    "fiberwrite;level=0",
    "x;%zz=1",
];

#[derive(Debug, Clone)]
enum OpEdit {
    Remove(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Rename(usize, usize),
    Reid(usize, u64),
    /// Rewrites one byte of one operation's encoding.
    Poke(usize, usize, u8),
}

fn op_edit() -> impl Strategy<Value = OpEdit> {
    prop_oneof![
        1 => (any::<usize>()).prop_map(OpEdit::Remove),
        1 => (any::<usize>()).prop_map(OpEdit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| OpEdit::Swap(a, b)),
        1 => (any::<usize>(), 0..NAMES.len()).prop_map(|(a, b)| OpEdit::Rename(a, b)),
        1 => (any::<usize>(), 0u64..40).prop_map(|(a, b)| OpEdit::Reid(a, b)),
        3 => (any::<usize>(), any::<usize>(), 0u8..40).prop_map(|(a, p, b)| OpEdit::Poke(a, p, b)),
    ]
}

#[test]
fn structurally_mutated_graphs_never_panic() {
    let bases = bases();
    let mut runner = TestRunner::new(config(600));
    let strategy = (0..bases.len(), prop::collection::vec(op_edit(), 1..5));
    runner
        .run(&strategy, |(which, edits)| {
            let (base, dir) = &bases[which];
            let mut c = ComalGraph::decode(base.as_slice()).unwrap();
            let ops = &mut c.graph.as_mut().unwrap().operators;
            for e in edits {
                let n = ops.len();
                if n == 0 {
                    break;
                }
                match e {
                    OpEdit::Remove(i) => {
                        ops.remove(i % n);
                    }
                    OpEdit::Duplicate(i) => ops.push(ops[i % n].clone()),
                    OpEdit::Swap(a, b) => ops.swap(a % n, b % n),
                    OpEdit::Rename(i, k) => ops[i % n].name = NAMES[k].to_string(),
                    OpEdit::Reid(i, id) => ops[i % n].id = id,
                    OpEdit::Poke(i, p, x) => {
                        let mut b = ops[i % n].encode_to_vec();
                        if !b.is_empty() {
                            let m = b.len();
                            b[p % m] = x;
                        }
                        if let Ok(o) = fuseflow_comal::proto::Operation::decode(b.as_slice()) {
                            ops[i % n] = o;
                        }
                    }
                }
            }
            exercise_graph(&c, dir.path())
        })
        .unwrap();
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every `tests/data/*.bin` (inputs that once crashed) imports without a panic, against the
/// data of every base.
#[test]
fn regression_inputs_never_panic() {
    let bases = bases();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .map(|d| d.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "bin")).collect())
        .unwrap_or_default();
    files.sort();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (_, dir) in &bases {
            exercise(&bytes, dir.path()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
