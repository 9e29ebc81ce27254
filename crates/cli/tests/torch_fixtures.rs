//! The programs the Python package translates from the paper's five PyTorch models
//! (`tests/fixtures/torch/*.ff`, written by `python -m fuseflow fixtures DIR` and checked
//! against a fresh translation by `python/tests/test_models.py`) still parse, plan, compile and
//! verify here, without torch. Their timing on the ideal machine is pinned as insta snapshots
//! (`tests/snapshots/torch_fixtures__*.snap`): a change of the translation (a new fixture) or
//! of the compiler shows up as a snapshot diff, accepted deliberately
//! (`INSTA_UPDATE=always cargo test -p fuseflow --test torch_fixtures`).
//!
//! The run that simulates for long at these shapes (the GPT-3 block fully fused: 10⁸ tokens) is
//! compiled only: its line gives the graph's size instead of cycles.

use std::fmt::Write;
use std::path::PathBuf;

use fuseflow_compiler::Fusion;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

/// Whether a run is only compiled (see the module comment).
fn compile_only(model: &str, fusion: &Fusion) -> bool {
    model == "gpt3_decoder" && *fusion == Fusion::Full
}

/// One line per fusion granularity.
fn table(model: &str) -> String {
    let path = fixtures().join(format!("{model}.ff"));
    let p = fuseflow_ir::load(&path, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = format!("statements {}  expanded {}\n", p.user_stmts.len(), p.stmts.len());
    for fusion in [Fusion::Unfused, Fusion::Partial, Fusion::Full] {
        let cfg = fuseflow::RunConfig { fusion: fusion.clone(), ..Default::default() };
        if compile_only(model, &fusion) {
            let groups = fuseflow::compile_groups(&p, &cfg).unwrap_or_else(|e| panic!("{model} {fusion}: {e}"));
            let nodes: usize = groups.iter().map(|g| g.graph.nodes.len()).sum();
            writeln!(out, "{:<8} groups {:>2}  compiled only: {nodes} nodes", fusion.to_string(), groups.len())
                .unwrap();
            continue;
        }
        let r = fuseflow::run(&p, &fixtures(), &cfg).unwrap_or_else(|e| panic!("{model} {fusion}: {e}"));
        assert!(r.verified, "{model} {fusion}: {:?}", r.reason);
        assert!(r.outputs.contains_key("y"), "{model} {fusion}: the run hands back its output");
        writeln!(
            out,
            "{:<8} groups {:>2}  cycles {:>9}  tokens {:>10}  flops {:>9}  offchip {:>9}",
            fusion.to_string(),
            r.groups.len(),
            r.cycles,
            r.tokens,
            r.flops,
            r.offchip_bytes
        )
        .unwrap();
    }
    out
}

macro_rules! pin {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), table(stringify!($name)));
            }
        )*
    };
}

pin!(bigbird_attention, gcn, gpt3_decoder, graphsage, sae);
