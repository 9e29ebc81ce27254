//! The benchmarks behind `fuseflow bench`.
//!
//! Simulator benchmarks ([`SUITE`]): each is a program text compiled and simulated, by default
//! with unbounded channels and ideal memory; throughput is tokens moved over channels per second
//! of simulation wall time. Every run is also verified against the reference evaluator (outside
//! the timed region).
//!
//! Compile benchmarks ([`COMPILE_SUITE`]): a model at a preset and a fusion granularity, timing
//! the plan and the lowering of every group ([`crate::compile_groups`]); nothing is simulated.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use fuseflow_compiler::Fusion;
use fuseflow_sim::SimConfig;

use crate::{compile_groups, run, DriverError, RunConfig};

/// One benchmark definition.
pub struct Bench {
    /// Name.
    pub name: &'static str,
    /// Program text.
    pub program: &'static str,
    /// Dataflow order (empty: the compiler's choice).
    pub order: &'static [&'static str],
    /// Fuse every statement into one graph (else one graph per statement).
    pub fused: bool,
    /// Sparsity blocking (`--block B`), for a blocked benchmark.
    pub block: Option<usize>,
    /// Simulate node by node, without fused products (`SimConfig::fuse_products` off): the
    /// engine's speed on the same graph without them, for comparison.
    pub node_by_node: bool,
}

/// The benchmark suite.
pub const SUITE: &[Bench] = &[
    Bench {
        name: "spmm_gustavson_2000_1pct",
        program: "input A[2000, 2000] dcsr = random(density=0.01, seed=1)\n\
                  input B[2000, 2000] dcsr = random(density=0.01, seed=2)\n\
                  output X[2000, 2000] dcsr\n\
                  X(i,j) = A(i,k) * B(k,j)\n",
        order: &["i", "k", "j"],
        fused: false,
        block: None,
        node_by_node: false,
    },
    // The first benchmark in 4 parallel lanes over rows (a `par` line): the same tokens plus
    // the forks' and gathers', in about a quarter of the cycles.
    Bench {
        name: "spmm_gustavson_2000_1pct_par4",
        program: "input A[2000, 2000] dcsr = random(density=0.01, seed=1)\n\
                  input B[2000, 2000] dcsr = random(density=0.01, seed=2)\n\
                  output X[2000, 2000] dcsr\n\
                  X(i,j) = A(i,k) * B(k,j)\n\
                  par i=4\n",
        order: &["i", "k", "j"],
        fused: false,
        block: None,
        node_by_node: false,
    },
    Bench {
        name: "spmm_inner_200_10pct",
        program: "input A[200, 200] dcsr = random(density=0.1, seed=1)\n\
                  input B[200, 200] dcsc = random(density=0.1, seed=2)\n\
                  output X[200, 200] dcsr\n\
                  X(i,j) = A(i,k) * B(k,j)\n",
        order: &["i", "j", "k"],
        fused: false,
        block: None,
        node_by_node: false,
    },
    Bench {
        name: "bigbird_attention_256_block16",
        program: BIGBIRD_256,
        order: &[],
        fused: true,
        block: Some(16),
        node_by_node: false,
    },
    // Dense matrix products, the dense layers' kernels: inner product (a fused dot product per
    // output) and Gustavson (a fused broadcast product per row of A and row of B), each also
    // node by node; same cycles and tokens either way.
    Bench {
        name: "dense_inner_256",
        program: DENSE_256_COLS,
        order: &["i", "j", "k"],
        fused: false,
        block: None,
        node_by_node: false,
    },
    Bench {
        name: "dense_inner_256_nodes",
        program: DENSE_256_COLS,
        order: &["i", "j", "k"],
        fused: false,
        block: None,
        node_by_node: true,
    },
    Bench {
        name: "dense_gustavson_256",
        program: DENSE_256,
        order: &["i", "k", "j"],
        fused: false,
        block: None,
        node_by_node: false,
    },
    Bench {
        name: "dense_gustavson_256_nodes",
        program: DENSE_256,
        order: &["i", "k", "j"],
        fused: false,
        block: None,
        node_by_node: true,
    },
    // A fully fused two-layer GCN on a sparse 3,000-node graph: for every row `i`, the
    // adjacency's outer level unioned with a range over all rows and intersected with row `i`
    // (`prims::fill`, a filled intersection: 9·10⁶ coordinates dropped), around the recomputed
    // feature transforms (fused broadcast products); also node by node.
    Bench { name: "gcn_full_3000", program: GCN_3000, order: &[], fused: true, block: None, node_by_node: false },
    Bench { name: "gcn_full_3000_nodes", program: GCN_3000, order: &[], fused: true, block: None, node_by_node: true },
];

/// The GCN of `examples/gcn.ff` on a random 3,000-node graph of about 4 entries a row, with 8
/// input features.
const GCN_3000: &str = "input  A[3000, 3000] dcsr = random(density=0.0013, seed=11)\n\
                        input  X[3000, 8] dense = random(density=1, seed=1)\n\
                        input  W1[16, 8] dense order(1,0) = random(density=1, seed=2)\n\
                        input  b1[16] dense = random(density=1, seed=3)\n\
                        input  W2[4, 16] dense order(1,0) = random(density=1, seed=4)\n\
                        input  b2[4] dense = random(density=1, seed=5)\n\
                        temp   AX[3000, 8] dense\n\
                        temp   T1[3000, 16] dense\n\
                        temp   Z1[3000, 16] dense\n\
                        temp   H1[3000, 16] dense\n\
                        temp   AH[3000, 16] dense\n\
                        temp   T2[3000, 4] dense\n\
                        temp   Z2[3000, 4] dense\n\
                        temp   M[3000] dense\n\
                        temp   E[3000, 4] dense\n\
                        temp   S[3000] dense\n\
                        output Y[3000, 4] dense\n\
                        AX(i,f) = A(i,k) * X(k,f)\n\
                        T1(i,h) = AX(i,f) * W1(h,f)\n\
                        Z1(i,h) = T1(i,h) + b1(h)\n\
                        H1(i,h) = relu(Z1(i,h))\n\
                        AH(i,h) = A(i,k) * H1(k,h)\n\
                        T2(i,c) = AH(i,h) * W2(c,h)\n\
                        Z2(i,c) = T2(i,c) + b2(c)\n\
                        M(i) = maxr(c, Z2(i,c))\n\
                        E(i,c) = exp(Z2(i,c) - M(i))\n\
                        S(i) = sum(c, E(i,c))\n\
                        Y(i,c) = E(i,c) / S(i)\n";

/// A dense 256×256 · 256×256 product (Gustavson order: B row-major).
const DENSE_256: &str = "input A[256, 256] dense = random(density=1, seed=1)\n\
                         input B[256, 256] dense = random(density=1, seed=2)\n\
                         output X[256, 256] dense\n\
                         X(i,j) = A(i,k) * B(k,j)\n";

/// [`DENSE_256`] with B column-major, for the inner-product order.
const DENSE_256_COLS: &str = "input A[256, 256] dense = random(density=1, seed=1)\n\
                              input B[256, 256] dense order(1,0) = random(density=1, seed=2)\n\
                              output X[256, 256] dense\n\
                              X(i,j) = A(i,k) * B(k,j)\n";

/// The fused BigBird attention kernel (examples/bigbird_attention.ff) at S = 256, 2 heads × 32,
/// mask block 16: the blocked benchmark.
const BIGBIRD_256: &str = "input  Q[2, 256, 32] dense = random(density=1, seed=1)\n\
                           input  K[2, 256, 32] dense = random(density=1, seed=2)\n\
                           input  V[2, 256, 32] dense = random(density=1, seed=3)\n\
                           input  M[256, 256] dcsr = bigbird(block=16, global=2, window=1, random=2, seed=4)\n\
                           temp   Sc[2, 256, 256] dense\n\
                           temp   Sm[2, 256, 256] (dense, compressed, compressed)\n\
                           temp   Ss[2, 256, 256] (dense, compressed, compressed)\n\
                           temp   P[2, 256, 256] (dense, compressed, compressed)\n\
                           output O[2, 256, 32] dense\n\
                           Sc(h,i,j) = Q(h,i,e) * K(h,j,e)\n\
                           Sm(h,i,j) = Sc(h,i,j) * M(i,j)\n\
                           Ss(h,i,j) = Sm(h,i,j) / 8\n\
                           P(h,i,j) = masked_softmax(j, Ss(h,i,j))\n\
                           O(h,i,e) = P(h,i,j) * V(h,j,e)\n";

/// One benchmark's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Benchmark name.
    pub name: String,
    /// `"simulate"` (tells these apart from [`CompileResult`]s in `fuseflow bench --json`).
    pub kind: &'static str,
    /// Tokens moved over channels.
    pub tokens: u64,
    /// Simulated cycles.
    pub cycles: u64,
    /// Simulation wall time (best of the repetitions).
    pub wall_seconds: f64,
    /// `tokens / wall_seconds`.
    pub tokens_per_second: f64,
    /// Whether the output matched the reference (and, for a node-by-node benchmark, whether
    /// its cycles and tokens equal those of its fused twin, the benchmark without `_nodes`).
    pub verified: bool,
}

/// Runs every benchmark `reps` times on the ideal machine and keeps the fastest simulation.
pub fn run_suite(reps: usize) -> Result<Vec<BenchResult>, DriverError> {
    run_suite_with(reps, &SimConfig::default())
}

/// [`run_suite`] on the machine `sim` describes (e.g. from a hardware preset).
pub fn run_suite_with(reps: usize, sim: &SimConfig) -> Result<Vec<BenchResult>, DriverError> {
    let mut out = Vec::new();
    for b in SUITE {
        let prog = fuseflow_ir::parse(b.program, b.name, &BTreeMap::new())?;
        let prog = fuseflow_ir::check(prog)?;
        let cfg = RunConfig {
            order: (!b.order.is_empty()).then(|| b.order.iter().map(|s| s.to_string()).collect()),
            sim: SimConfig { fuse_products: !b.node_by_node, ..sim.clone() },
            fusion: if b.fused { Fusion::Full } else { Fusion::Unfused },
            block: b.block,
            ..RunConfig::default()
        };
        let mut best: Option<BenchResult> = None;
        for rep in 0..reps.max(1) {
            let cfg = RunConfig { verify: rep == 0, ..cfg.clone() };
            let r = run(&prog, Path::new("."), &cfg)?;
            let res = BenchResult {
                name: b.name.to_string(),
                kind: "simulate",
                tokens: r.tokens,
                cycles: r.cycles,
                wall_seconds: r.sim_seconds,
                tokens_per_second: r.tokens as f64 / r.sim_seconds.max(1e-12),
                verified: if rep == 0 { r.verified } else { best.as_ref().is_some_and(|b| b.verified) },
            };
            if best.as_ref().is_none_or(|b| res.wall_seconds < b.wall_seconds) {
                best = Some(res);
            }
        }
        out.extend(best);
    }
    // Fused products change speed, never results.
    let twins: Vec<(usize, (u64, u64))> = out
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let fused = r.name.strip_suffix("_nodes")?;
            let twin = out.iter().find(|t| t.name == fused)?;
            Some((i, (twin.cycles, twin.tokens)))
        })
        .collect();
    for (i, key) in twins {
        out[i].verified &= (out[i].cycles, out[i].tokens) == key;
    }
    Ok(out)
}

/// The GPT-3 decoder block of `examples/gpt3_decoder.ff`.
const GPT3_DECODER: &str = include_str!("../../../examples/gpt3_decoder.ff");

/// One compile-only benchmark: a program at a preset and a fusion granularity.
pub struct CompileBench {
    /// Name.
    pub name: &'static str,
    /// File name the program is reported under (errors name it).
    pub file: &'static str,
    /// Program text.
    pub program: &'static str,
    /// The program's `preset` line to apply.
    pub preset: &'static str,
    /// Fusion granularity (`unfused`, `partial`, `full` or explicit groups).
    pub fusion: &'static str,
}

/// The compile benchmarks: the GPT-3 decoder block at paper scale (issue 3 asks that it compile
/// in under a second) at every granularity.
pub const COMPILE_SUITE: &[CompileBench] = &[
    CompileBench {
        name: "compile_gpt3_paper_unfused",
        file: "examples/gpt3_decoder.ff",
        program: GPT3_DECODER,
        preset: "paper",
        fusion: "unfused",
    },
    CompileBench {
        name: "compile_gpt3_paper_partial",
        file: "examples/gpt3_decoder.ff",
        program: GPT3_DECODER,
        preset: "paper",
        fusion: "partial",
    },
    CompileBench {
        name: "compile_gpt3_paper_full",
        file: "examples/gpt3_decoder.ff",
        program: GPT3_DECODER,
        preset: "paper",
        fusion: "full",
    },
];

/// One compile benchmark's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompileResult {
    /// Benchmark name.
    pub name: String,
    /// `"compile"`.
    pub kind: &'static str,
    /// The preset applied.
    pub preset: String,
    /// The fusion granularity.
    pub fusion: String,
    /// Graphs (fusion groups) compiled.
    pub groups: usize,
    /// Nodes over all graphs.
    pub nodes: usize,
    /// Streams over all graphs.
    pub streams: usize,
    /// Wall time of planning and lowering every group (best of the repetitions); parsing and
    /// checking the program are not included.
    pub wall_seconds: f64,
}

/// Compiles every [`COMPILE_SUITE`] entry `reps` times and keeps the fastest.
pub fn run_compile_suite(reps: usize) -> Result<Vec<CompileResult>, DriverError> {
    COMPILE_SUITE.iter().map(|b| run_compile_bench(b, reps)).collect()
}

/// Plans and lowers every group of `b` `reps` times; reports the fastest.
pub fn run_compile_bench(b: &CompileBench, reps: usize) -> Result<CompileResult, DriverError> {
    let overrides = fuseflow_ir::Overrides { preset: Some(b.preset.to_string()), params: BTreeMap::new() };
    let prog = fuseflow_ir::check(fuseflow_ir::parse_with(b.program, b.file, &overrides)?)?;
    let fusion: Fusion = b.fusion.parse().map_err(|message| DriverError::Tensor { tensor: b.file.into(), message })?;
    let cfg = RunConfig { fusion, ..RunConfig::default() };
    let time = || -> Result<(f64, Vec<fuseflow_compiler::GroupKernel>), DriverError> {
        let start = Instant::now();
        let kernels = compile_groups(&prog, &cfg)?;
        Ok((start.elapsed().as_secs_f64(), kernels))
    };
    let (mut wall_seconds, kernels) = time()?;
    for _ in 1..reps {
        wall_seconds = wall_seconds.min(time()?.0);
    }
    Ok(CompileResult {
        name: b.name.to_string(),
        kind: "compile",
        preset: b.preset.to_string(),
        fusion: b.fusion.to_string(),
        groups: kernels.len(),
        nodes: kernels.iter().map(|k| k.graph.nodes.len()).sum(),
        streams: kernels.iter().map(|k| k.graph.streams.len()).sum(),
        wall_seconds,
    })
}

/// One paper-scale run of `fuseflow bench --paper`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PaperResult {
    /// Benchmark name.
    pub name: String,
    /// `"paper"`.
    pub kind: &'static str,
    /// The program run.
    pub program: &'static str,
    /// Fusion granularity (`unfused`, `partial`, `full`: the paper's, see [`run_paper_suite`]).
    pub fusion: String,
    /// The groups of that granularity, as `--fusion` takes them.
    pub fusion_groups: String,
    /// Fusion groups simulated.
    pub groups: usize,
    /// Simulated cycles.
    pub cycles: u64,
    /// Tokens moved over channels.
    pub tokens: u64,
    /// Whole-run wall time: loading, the reference evaluator, compiling, simulating, checking.
    pub wall_seconds: f64,
    /// Wall time of the simulation phase.
    pub sim_wall_seconds: f64,
    /// Simulation time summed over groups: `sim_seconds / sim_wall_seconds` is what
    /// simulating groups side by side gained.
    pub sim_seconds: f64,
    /// Worker threads.
    pub jobs: usize,
    /// Whether every output matched the reference.
    pub verified: bool,
}

/// The paper suite's runs: (granularity, program file, program at `--preset paper`, fusion).
type PaperRun = (&'static str, &'static str, fuseflow_ir::CheckedProgram, Fusion);

fn paper_runs() -> Result<Vec<PaperRun>, DriverError> {
    use fuseflow_explore::reproduce::plan::{GPT3_CHAIN, GPT3_FULL};
    const CHAIN: &str = "crates/explore/data/gpt3_decoder_chain.ff";
    const DECODER: &str = "examples/gpt3_decoder.ff";
    let overrides = fuseflow_ir::Overrides { preset: Some("paper".into()), params: BTreeMap::new() };
    let decoder = fuseflow_ir::check(fuseflow_ir::parse_with(GPT3_DECODER, DECODER, &overrides)?)?;
    let chain = fuseflow_ir::check(fuseflow_ir::parse_with(GPT3_CHAIN, CHAIN, &overrides)?)?;
    let full: Fusion = GPT3_FULL
        .parse()
        .map_err(|message| fuseflow_compiler::CompileError::Fusion { origin: GPT3_FULL.into(), message })?;
    Ok(vec![
        ("unfused", DECODER, decoder.clone(), Fusion::Unfused),
        ("partial", DECODER, decoder, Fusion::Partial),
        ("full", CHAIN, chain, full),
    ])
}

/// The opt-in paper-scale benchmark: the GPT-3 Small decoder block at the paper's three
/// granularities (benchmarks.md §2.4: 18 / 3 / 3 kernels per decoder), verified, groups
/// simulated on `jobs` threads (0 = one per core); minutes, not seconds: `fuseflow bench
/// --paper`.
///
/// Unfused and partial (c1, c2, c3) run `examples/gpt3_decoder.ff --preset paper`. The paper's
/// full fuses c3 with the next decoder's LN1 + QKV, which one decoder's program cannot express:
/// it runs the two-decoder chain program with c1, c2 and c3′ (what `fuseflow reproduce fig12`
/// composes into whole-model totals). One graph for a whole decoder (`--fusion full` of the
/// decoder file) is not run: it recomputes K and V rows for every query row, about 8.6·10¹²
/// FLOPs by the estimate (360× partial's), days of simulation on any machine.
///
/// `control` is each run's: progress (the phase names the statements simulated) and
/// cancellation.
pub fn run_paper_suite(
    jobs: usize,
    sim: &SimConfig,
    control: &crate::RunControl,
) -> Result<Vec<PaperResult>, DriverError> {
    let threads = crate::thread_count(jobs);
    let mut out = Vec::new();
    for (name, program, prog, fusion) in paper_runs()? {
        let cfg = RunConfig { fusion, sim: sim.clone(), jobs: threads, ..RunConfig::default() };
        let r = crate::run_with(&prog, Path::new("."), &cfg, control)?;
        let labels: Vec<&str> = r.groups.iter().map(|g| g.label.as_str()).collect();
        out.push(PaperResult {
            name: format!("gpt3_paper_{name}"),
            kind: "paper",
            program,
            fusion: name.to_string(),
            fusion_groups: labels.join(","),
            groups: r.groups.len(),
            cycles: r.cycles,
            tokens: r.tokens,
            wall_seconds: r.wall_seconds,
            sim_wall_seconds: r.sim_wall_seconds,
            sim_seconds: r.sim_seconds,
            jobs: threads,
            verified: r.verified,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper suite's three configurations at paper scale: unfused, and 3 kernels per decoder
    /// for partial and full (benchmarks.md §2.4), full being c1, c2 and c3′ of the chain.
    #[test]
    fn the_paper_suite_runs_the_papers_granularities() {
        let runs = paper_runs().unwrap();
        let planned: Vec<(&str, usize, String)> = runs
            .iter()
            .map(|(name, _, p, f)| {
                let groups = fuseflow_compiler::plan(p, f).unwrap();
                let labels: Vec<String> = groups.iter().map(|g| p.group_label(g)).collect();
                (*name, groups.len(), labels.join(","))
            })
            .collect();
        // One kernel per step: each layer norm runs as 5, the masked softmax as 4 (the paper
        // counts 18 kernels, some of its ops fused).
        assert_eq!(planned[0].0, "unfused");
        assert_eq!(planned[0].1, 25, "{planned:?}");
        assert!(planned[0].2.starts_with("0.0,0.1,0.2,0.3,0.4,1,2,3,4,5,6.0"), "{planned:?}");
        assert_eq!((planned[1].0, planned[1].1, planned[1].2.as_str()), ("partial", 3, "0-3,4-7,8-13"));
        assert_eq!((planned[2].0, planned[2].1, planned[2].2.as_str()), ("full", 3, "0-3,4-7,8-17"));
        assert_eq!(runs[2].2.params.get("S"), Some(&1024));
    }
}
