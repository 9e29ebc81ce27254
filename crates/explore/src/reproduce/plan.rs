//! The configurations of each experiment at each scale.
//!
//! Programs are the repository's examples, compiled into the binary so that `fuseflow
//! reproduce` runs from any directory, plus `data/gpt3_decoder_chain.ff` (two consecutive
//! decoders, as far as the paper's "full" GPT-3 granularity needs them: see [`gpt3`]).

use std::collections::BTreeMap;

use super::{Experiment, Scale};

/// A program's text and the name its errors and records use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Where it comes from (`examples/gcn.ff`), for records and error messages.
    pub file: String,
    /// The program text.
    pub source: String,
}

impl Program {
    fn embedded(file: &str, source: &str) -> Program {
        Program { file: file.to_string(), source: source.to_string() }
    }
}

const GCN: &str = include_str!("../../../../examples/gcn.ff");
const GRAPHSAGE: &str = include_str!("../../../../examples/graphsage.ff");
const SAE: &str = include_str!("../../../../examples/sae.ff");
const ATTENTION: &str = include_str!("../../../../examples/bigbird_attention.ff");
const NESTED: &str = include_str!("../../../../examples/nested_matmul.ff");
/// `data/gpt3_decoder_chain.ff`: a GPT-3 decoder block and the next one's LN1 + QKV, so that
/// the paper's "full" (c3 fused with the next decoder's first kernel, [`GPT3_FULL`]) is one
/// program's fusion.
pub const GPT3_CHAIN: &str = include_str!("../../data/gpt3_decoder_chain.ff");

/// Statements of the first decoder in the chain program (`0-13`); 14-17 are the next
/// decoder's LN1 + QKV.
pub const GPT3_DECODER_STATEMENTS: usize = 14;

/// Decoder layers of GPT-3 Small.
pub const GPT3_LAYERS: u64 = 12;

/// Fusion of the chain program that yields c1, c2, c3 (and c1 of the next decoder).
pub const GPT3_PARTIAL: &str = "0-3,4-7,8-13,14-17";
/// Fusion of the chain program that yields c1, c2 and c3' (c3 fused with the next LN1 + QKV).
pub const GPT3_FULL: &str = "0-3,4-7,8-17";

/// One simulated configuration of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Unique within its experiment: `model/dataset/variant/hw`.
    pub id: String,
    /// Model (`gcn`, `graphsage`, `sae`, `gpt3`, `attention`, `nested_matmul`).
    pub model: String,
    /// Our data set or shape label (`default`, `cora-synth`, `B=16`, …).
    pub dataset: String,
    /// What the experiment varies: a granularity, a lanes setting, `scalar`/`blocked`, an order.
    pub variant: String,
    /// The program.
    pub program: Program,
    /// A `preset` line of the program to apply.
    pub preset: Option<String>,
    /// Parameter values (after the preset).
    pub params: BTreeMap<String, i64>,
    /// A graph dataset (`fuseflow datasets`) whose adjacency is bound to `A`, with `N`, `F`, `C`
    /// set from it.
    pub graph: Option<String>,
    /// `--fusion`: `unfused`, `partial`, `full` or groups such as `0-3,4-10`.
    pub fusion: String,
    /// Hardware preset (`ideal`: memory model off; `rda`: HBM-like memory model on).
    pub hw: String,
    /// Parallel lanes per index (`--par`).
    pub par: Vec<(String, u32)>,
    /// `--block B`.
    pub block: Option<usize>,
    /// `--order`.
    pub order: Option<Vec<String>>,
    /// `--free-layout`: inputs stored as the order wants.
    pub free_layout: bool,
}

impl Config {
    fn new(model: &str, dataset: &str, variant: &str, program: &Program, fusion: &str, hw: &str) -> Config {
        Config {
            id: format!("{model}/{dataset}/{variant}/{hw}"),
            model: model.into(),
            dataset: dataset.into(),
            variant: variant.into(),
            program: program.clone(),
            preset: None,
            params: BTreeMap::new(),
            graph: None,
            fusion: fusion.into(),
            hw: hw.into(),
            par: Vec::new(),
            block: None,
            order: None,
            free_layout: false,
        }
    }

    /// Whether `other` is the same run under another name: the same program, preset,
    /// parameters, data, fusion, machine, lanes, blocking, order and layout. A run is a pure
    /// function of these (at one scale), so one's record is the other's (fig14's unfused and
    /// fully fused GCN are fig12's `ideal` ones).
    ///
    /// The fusion may be spelled differently if it plans the same groups (fig14's `both`,
    /// `0-3,4-10`, is fig12's `partial`, the GCN's `fuse` lines); it is compared last, since
    /// planning parses both programs.
    pub fn same_run(&self, other: &Config) -> bool {
        self.program == other.program
            && self.preset == other.preset
            && self.params == other.params
            && self.graph == other.graph
            && self.hw == other.hw
            && self.par == other.par
            && self.block == other.block
            && self.order == other.order
            && self.free_layout == other.free_layout
            && (self.fusion == other.fusion || self.planned_groups().is_some_and(|g| other.planned_groups() == Some(g)))
    }

    /// The groups of expanded statements the fusion plans for the program (which statements
    /// exist does not depend on parameter values), or `None` if it does not plan.
    fn planned_groups(&self) -> Option<Vec<Vec<usize>>> {
        let fusion: fuseflow_compiler::Fusion = self.fusion.parse().ok()?;
        let p = fuseflow_ir::parse(&self.program.source, &self.program.file, &BTreeMap::new()).ok()?;
        fuseflow_compiler::plan(&fuseflow_ir::check(p).ok()?, &fusion).ok()
    }

    fn params(mut self, params: &[(&str, i64)]) -> Config {
        self.params.extend(params.iter().map(|(k, v)| (k.to_string(), *v)));
        self
    }

    fn preset(mut self, preset: &str) -> Config {
        self.preset = Some(preset.into());
        self
    }

    fn graph(mut self, graph: Option<&str>) -> Config {
        self.graph = graph.map(str::to_string);
        self
    }
}

/// The machines of fig12: the memory model off and on.
const MACHINES: [&str; 2] = ["ideal", "rda"];

/// Graph datasets of the paper at paper scale (synthetic graphs matched to the published
/// statistics, benchmarks.md §3).
const PAPER_GRAPHS: [&str; 5] = ["cora-synth", "cora-ml-synth", "dblp-synth", "ogbl-collab-synth", "ogbn-mag-synth"];

/// The configurations of `exp` at `scale`, in a fixed order.
pub fn configs(exp: Experiment, scale: Scale) -> Vec<Config> {
    match exp {
        Experiment::Fig12 => fig12(scale),
        Experiment::Fig14 => fig14(scale),
        Experiment::Fig15 => fig15(scale),
        Experiment::Fig16 => fig16(scale),
        Experiment::Fig17 => fig17(),
    }
}

fn fig12(scale: Scale) -> Vec<Config> {
    let mut v = Vec::new();
    let gnn_data: Vec<Option<&str>> = match scale {
        Scale::Small => vec![None],
        Scale::Paper => PAPER_GRAPHS.iter().map(|g| Some(*g)).collect(),
    };
    for (model, src, file) in [("gcn", GCN, "examples/gcn.ff"), ("graphsage", GRAPHSAGE, "examples/graphsage.ff")] {
        let prog = Program::embedded(file, src);
        for g in &gnn_data {
            for hw in MACHINES {
                for f in ["unfused", "partial", "full"] {
                    v.push(Config::new(model, g.unwrap_or("default"), f, &prog, f, hw).graph(*g));
                }
            }
        }
    }
    let sae = Program::embedded("examples/sae.ff", SAE);
    let sae_sets: Vec<(&str, Option<&str>)> = match scale {
        Scale::Small => vec![("default", None)],
        Scale::Paper => vec![("imagenet", Some("paper")), ("nih-cxr", Some("nih_cxr")), ("luna16", Some("luna16"))],
    };
    for (name, preset) in sae_sets {
        for hw in MACHINES {
            for f in ["unfused", "partial", "full"] {
                let c = Config::new("sae", name, f, &sae, f, hw);
                v.push(match preset {
                    Some(p) => c.preset(p),
                    None => c,
                });
            }
        }
    }
    v.extend(gpt3(scale));
    v
}

/// GPT-3 + BigBird at B = 16, 32, 64 on both machines: three runs of the chain program each
/// (unfused; c1, c2, c3; c1, c2, c3'), composed into whole-model totals by
/// [`super::render`].
///
/// The paper's "full" fuses the next decoder's LN1 + QKV into the previous decoder's last
/// group, which one decoder's program cannot express; the chain program holds a decoder and
/// the next one's first group, so c3' is simulated as one real fused graph (its cycles are not
/// a sum of c3 and c1: they overlap in one pipeline).
pub fn gpt3(scale: Scale) -> Vec<Config> {
    let prog = Program::embedded("crates/explore/data/gpt3_decoder_chain.ff", GPT3_CHAIN);
    let mut v = Vec::new();
    // Small scale: the default shapes (S = 32) with blocks 2, 4, 8, which leave 16, 8 and 4
    // block rows as the paper's 16, 32, 64 leave 64, 32 and 16 at S = 1024 (a block of 16 or
    // more would make the mask of a 32-long sequence dense).
    let blocks: [i64; 3] = match scale {
        Scale::Small => [2, 4, 8],
        Scale::Paper => [16, 32, 64],
    };
    for b in blocks {
        for hw in MACHINES {
            let dataset = format!("B={b}");
            for (variant, fusion) in [("unfused", "unfused"), ("partial", GPT3_PARTIAL), ("full", GPT3_FULL)] {
                let c = Config::new("gpt3", &dataset, variant, &prog, fusion, hw);
                v.push(match scale {
                    Scale::Small => c.params(&[("B", b)]),
                    Scale::Paper => c.preset("paper").params(&[("B", b)]),
                });
            }
        }
    }
    v
}

/// The five GCN variants of the operational-intensity figure, as user-statement groups of
/// examples/gcn.ff (layer 1 is statements 0-3, layer 2 is 4-10).
pub const FIG14_VARIANTS: [(&str, &str); 5] = [
    ("unfused", "unfused"),
    ("layer1", "0-3,4,5,6,7,8,9,10"),
    ("layer2", "0,1,2,3,4-10"),
    ("both", "0-3,4-10"),
    ("full", "full"),
];

fn fig14(scale: Scale) -> Vec<Config> {
    let prog = Program::embedded("examples/gcn.ff", GCN);
    let data: Vec<Option<&str>> = match scale {
        Scale::Small => vec![None],
        Scale::Paper => vec![Some("cora-ml-synth"), Some("dblp-synth"), Some("ogbl-collab-synth")],
    };
    let mut v = Vec::new();
    for g in data {
        for (variant, fusion) in FIG14_VARIANTS {
            v.push(Config::new("gcn", g.unwrap_or("default"), variant, &prog, fusion, "ideal").graph(g));
        }
    }
    v
}

/// Lane settings of fig15 (benchmarks.md §4.1, sweep B): outer level `h`, second level `i`,
/// and both.
pub const FIG15_LANES: [(&str, &[(&str, u32)]); 6] = [
    ("1", &[]),
    ("h=2", &[("h", 2)]),
    ("h=4", &[("h", 4)]),
    ("i=2", &[("i", 2)]),
    ("i=4", &[("i", 4)]),
    ("h=4,i=4", &[("h", 4), ("i", 4)]),
];

/// The fused attention kernel with a dense mask (the BigBird generator replaced by a dense
/// one), as scripts/par-scaling.sh runs it.
fn dense_attention() -> Program {
    let source: String = ATTENTION
        .lines()
        .map(|l| match l.find("= bigbird(") {
            Some(at) => format!("{}= random(density=1)", &l[..at]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    Program { file: "examples/bigbird_attention.ff (dense mask)".into(), source: source + "\n" }
}

fn fig15(scale: Scale) -> Vec<Config> {
    let prog = dense_attention();
    let (dataset, params): (&str, &[(&str, i64)]) = match scale {
        Scale::Small => ("S=64,NH=4,DH=16", &[("S", 64), ("NH", 4), ("DH", 16)]),
        Scale::Paper => ("S=1024,NH=12,DH=64", &[("S", 1024), ("NH", 12), ("DH", 64)]),
    };
    FIG15_LANES
        .iter()
        .map(|(label, lanes)| {
            let mut c = Config::new("attention", dataset, label, &prog, "full", "ideal").params(params);
            c.par = lanes.iter().map(|(i, n)| (i.to_string(), *n)).collect();
            c
        })
        .collect()
}

fn fig16(scale: Scale) -> Vec<Config> {
    let prog = Program::embedded("examples/bigbird_attention.ff", ATTENTION);
    let mut v = Vec::new();
    for b in [16usize, 32, 64] {
        let dataset = format!("B={b}");
        for mode in ["scalar", "blocked"] {
            let c = Config::new("attention", &dataset, mode, &prog, "full", "rda");
            let mut c = match scale {
                Scale::Small => c.params(&[("S", 128), ("NH", 1), ("DH", 64), ("B", b as i64)]),
                Scale::Paper => c.preset("paper").params(&[("B", b as i64)]),
            };
            if mode == "blocked" {
                c.block = Some(b);
            }
            v.push(c);
        }
    }
    v
}

/// Every permutation of the nested matmul's four indices (the paper's 15 legal orders are a
/// subset, named by an enumeration index that does not carry over: benchmarks.md §4.3).
pub fn nested_orders() -> Vec<Vec<String>> {
    fn permute(rest: &[&str], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if rest.is_empty() {
            out.push(prefix.clone());
            return;
        }
        for (k, x) in rest.iter().enumerate() {
            let mut r = rest.to_vec();
            r.remove(k);
            prefix.push(x.to_string());
            permute(&r, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    permute(&["i", "j", "k", "l"], &mut Vec::new(), &mut out);
    out
}

fn fig17() -> Vec<Config> {
    // KarateClub-sized at both scales: the paper's order study uses 34×34 matrices.
    let prog = Program::embedded("examples/nested_matmul.ff", NESTED);
    nested_orders()
        .into_iter()
        .map(|o| {
            let mut c =
                Config::new("nested_matmul", "karate", &o.join(""), &prog, "full", "ideal").graph(Some("karate"));
            c.order = Some(o);
            c.free_layout = true;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_experiment_and_scale() {
        for exp in Experiment::ALL {
            for scale in [Scale::Small, Scale::Paper] {
                let cs = configs(exp, scale);
                assert!(!cs.is_empty());
                let ids: std::collections::BTreeSet<&str> = cs.iter().map(|c| c.id.as_str()).collect();
                assert_eq!(ids.len(), cs.len(), "{exp:?} {scale:?}");
            }
        }
    }

    #[test]
    fn fig14_shares_its_unfused_both_and_fully_fused_runs_with_fig12() {
        for scale in [Scale::Small, Scale::Paper] {
            let fig12 = configs(Experiment::Fig12, scale);
            for c in configs(Experiment::Fig14, scale) {
                let same: Vec<&str> = fig12.iter().filter(|o| o.same_run(&c)).map(|o| o.id.as_str()).collect();
                match c.variant.as_str() {
                    "unfused" | "full" => assert_eq!(same, [c.id.as_str()], "{scale:?}"),
                    // `0-3,4-10` plans the GCN's `fuse` lines.
                    "both" => assert_eq!(same, [c.id.replace("/both/", "/partial/")], "{scale:?}"),
                    _ => assert!(same.is_empty(), "{} is {same:?}", c.id),
                }
            }
        }
    }

    #[test]
    fn dense_attention_replaces_only_the_mask_generator() {
        let p = dense_attention();
        assert!(!p.source.contains("bigbird("));
        assert!(p.source.contains("input  M[S, S]      dcsr  = random(density=1)"), "{}", p.source);
        assert_eq!(p.source.lines().count(), ATTENTION.lines().count());
    }

    #[test]
    fn orders_are_the_24_permutations() {
        let o = nested_orders();
        assert_eq!(o.len(), 24);
        let set: std::collections::BTreeSet<String> = o.iter().map(|x| x.join("")).collect();
        assert_eq!(set.len(), 24);
    }
}
