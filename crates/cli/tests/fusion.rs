//! Fusion granularity: every multi-statement example verifies unfused, layer-wise (partial)
//! and fully fused, and the GCN shows the paper's qualitative finding.

mod common;

use common::examples_dir;
use fuseflow_compiler::Fusion;

fn run(file: &str, fusion: Fusion) -> fuseflow::RunReport {
    let p = fuseflow_ir::load(&examples_dir().join(file), &Default::default()).unwrap();
    let cfg = fuseflow::RunConfig { fusion: fusion.clone(), ..Default::default() };
    let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap_or_else(|e| panic!("{file} {fusion:?}: {e}"));
    assert!(r.verified, "{file} {fusion:?}: {:?}", r.groups.iter().map(|g| g.mismatch.clone()).collect::<Vec<_>>());
    r
}

#[test]
fn nested_matmul_fuses_without_recomputation() {
    let unfused = run("nested_matmul.ff", Fusion::Unfused);
    let full = run("nested_matmul.ff", Fusion::Full);
    assert_eq!(unfused.groups.len(), 2);
    assert_eq!(full.groups.len(), 1);
    assert_eq!(unfused.flops, full.flops, "T is consumed row by row, so fusing it recomputes nothing");
    assert!(full.cycles < unfused.cycles);
    assert!(full.offchip_bytes < unfused.offchip_bytes, "the intermediate T no longer goes through memory");
    let groups = run("nested_matmul.ff", "0,1".parse().unwrap());
    assert_eq!(groups.cycles, unfused.cycles);
}

#[test]
fn gcn_layerwise_fusion_wins_and_full_fusion_recomputes() {
    let unfused = run("gcn.ff", Fusion::Unfused);
    let partial = run("gcn.ff", Fusion::Partial);
    let full = run("gcn.ff", Fusion::Full);
    assert_eq!(unfused.groups.len(), 11);
    assert_eq!(partial.groups.len(), 2);
    assert_eq!(full.groups.len(), 1);
    assert!(partial.cycles < unfused.cycles, "partial {} vs unfused {}", partial.cycles, unfused.cycles);
    assert!(full.cycles > partial.cycles, "full {} vs partial {}", full.cycles, partial.cycles);
    // Full fusion recomputes layer 1 for every row of layer 2's aggregation.
    assert!(full.flops > 10 * partial.flops, "full {} vs partial {}", full.flops, partial.flops);
}

#[test]
fn bad_fusion_groups_are_rejected() {
    let p = fuseflow_ir::load(&examples_dir().join("gcn.ff"), &Default::default()).unwrap();
    for (groups, needle) in [("0-3,5-10", "expected statement 4"), ("0-3,4-12", "has 11"), ("0-3", "cover")] {
        let cfg = fuseflow::RunConfig { fusion: groups.parse().unwrap(), ..Default::default() };
        let e = fuseflow::run(&p, &examples_dir(), &cfg).unwrap_err().to_string();
        assert!(e.contains(needle), "{groups}: {e}");
    }
    assert!("0-x".parse::<Fusion>().is_err());
}

#[test]
fn every_model_verifies_under_three_orders_per_kernel_at_every_granularity() {
    let mut runs = 0;
    for file in ["gcn.ff", "graphsage.ff", "sae.ff", "nested_matmul.ff"] {
        let p = fuseflow_ir::load(&examples_dir().join(file), &Default::default()).unwrap();
        for fusion in [Fusion::Unfused, Fusion::Partial, Fusion::Full] {
            let groups = fuseflow_compiler::plan(&p, &fusion).unwrap();
            for (gi, g) in groups.iter().enumerate() {
                let orders = fuseflow_compiler::group_orders(&p, g, 3, &Default::default()).unwrap();
                for per_output in orders {
                    assert!(!per_output.is_empty());
                    for order in per_output {
                        let cfg = fuseflow::RunConfig {
                            fusion: Fusion::Groups(groups.clone()),
                            group_orders: [(gi, order.clone())].into_iter().collect(),
                            ..Default::default()
                        };
                        let r = fuseflow::run(&p, &examples_dir(), &cfg)
                            .unwrap_or_else(|e| panic!("{file} {fusion:?} {}: {e}", order.join(",")));
                        assert!(r.verified, "{file} {fusion:?} order {}", order.join(","));
                        runs += 1;
                    }
                }
            }
        }
    }
    assert!(runs >= 45, "{runs} runs");
}

/// Regression: fully fusing softmax and two layer norms inlines their operands many times and
/// builds joiners with more than 256 ports, which once overflowed port numbers and deadlocked.
#[test]
fn deeply_inlined_builtins_fuse_fully() {
    let src = "input A[2, 3] dense = random(density=0.5)\ninput B0[2, 3] dense = random(density=0.5)\n\
               temp T0[2, 3] dense\ntemp T1[2, 3] dense\ntemp T2[2, 3] dense\noutput T3[2, 3] dense\n\
               T0(i,j) = A(i,j) * B0(i,j)\nT1(i,j) = softmax(j, T0(i,j))\nT2(i,j) = layernorm(j, T1(i,j))\nT3(i,j) = layernorm(j, T2(i,j))\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "deep.ff", &Default::default()).unwrap()).unwrap();
    for fusion in [Fusion::Unfused, Fusion::Full] {
        let cfg = fuseflow::RunConfig { fusion: fusion.clone(), ..Default::default() };
        let r = fuseflow::run(&p, std::path::Path::new("."), &cfg).unwrap();
        assert!(r.verified, "{fusion:?}");
    }
}

#[test]
fn attention_and_decoder_models_verify() {
    for (file, fusions) in
        [("bigbird_attention.ff", vec![Fusion::Unfused, Fusion::Full]), ("gpt3_decoder.ff", vec![Fusion::Unfused])]
    {
        for fusion in fusions {
            let r = run(file, fusion);
            assert!(r.cycles > 0);
        }
    }
}
