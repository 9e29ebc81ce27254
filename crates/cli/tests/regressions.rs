//! Reproducers of bugs that the property tests found, kept as plain tests.

mod common;

use common::parse;
use fuseflow::RunConfig;
use fuseflow_compiler::Fusion;

fn verifies(src: &str, fusion: Fusion, depth: Option<usize>, row_sharing: bool) {
    let p = parse(src);
    let mut cfg = RunConfig { fusion: fusion.clone(), ..RunConfig::default() };
    cfg.sim.channel_capacity = depth;
    cfg.lower.row_sharing = row_sharing;
    let r = fuseflow::run(&p, std::path::Path::new("."), &cfg)
        .unwrap_or_else(|e| panic!("{fusion:?} depth {depth:?} row sharing {row_sharing}: {e}"));
    assert!(r.verified, "{fusion:?} depth {depth:?}: {:?}", r.groups.iter().map(|g| &g.mismatch).collect::<Vec<_>>());
}

/// Full fusion of softmax → row scale → softmax deadlocked at FIFO depth ≤ 4 (cycle 51): each
/// row reduction's result meets the row it reads, and chained reductions trail by several
/// rows. FIFO sizing gives those channels the room; every depth and both sharing modes run.
#[test]
fn chained_softmax_full_fusion_at_small_depths() {
    let src = "input A[4, 4] dense = random(density=0)
temp T0[4, 4] dense
input s1[4] dense = random(density=1)
temp T1[4, 4] dense
output T2[4, 4] dense
T0(i,j) = softmax(j, A(i,j))
T1(i,j) = T0(i,j) * s1(i)
T2(i,j) = softmax(j, T1(i,j))
";
    for depth in [Some(1), Some(2), Some(3), Some(4), Some(5), None] {
        for row_sharing in [true, false] {
            verifies(src, Fusion::Full, depth, row_sharing);
        }
    }
}

/// Two chained layer norms deadlocked at depth 4 under full fusion.
#[test]
fn chained_layer_norms_full_fusion_at_small_depths() {
    let src = "input A[3, 5] dense = random(density=0.6)
temp T0[3, 5] dense
output T1[3, 5] dense
T0(i,j) = layernorm(j, A(i,j))
T1(i,j) = layernorm(j, T0(i,j))
";
    for depth in [Some(1), Some(2), Some(4), None] {
        for row_sharing in [true, false] {
            verifies(src, Fusion::Full, depth, row_sharing);
        }
    }
}

/// Partial fusion that splits a masked softmax after its row max wrote `N` into a level writer
/// ("node n16: level writer received N"): an intersection passed on the references of a union
/// operand that may be absent without marking them, so no presence check followed.
#[test]
fn masked_softmax_split_after_its_max() {
    let src = "input A[4, 4] dense = random(density=0)
input B0[4, 4] dcsr = random(density=0)
temp T0[4, 4] dcsr
output T1[4, 4] dense
T0(i,j) = A(i,j) * B0(i,j)
T1(i,j) = masked_softmax(j, T0(i,j))
";
    verifies(src, Fusion::Expanded(vec![vec![0, 1], vec![2, 3, 4]]), None, true);
    verifies(src, Fusion::Expanded(vec![vec![0, 1], vec![2, 3, 4]]), Some(1), true);
}

/// The same after a layer norm, on an all-zero 1×1 input.
#[test]
fn layernorm_then_masked_softmax_split_on_empty_input() {
    let src = "input A[1, 1] dcsr = random(density=0)
temp T0[1, 1] dcsr
output T1[1, 1] dcsr
T0(i,j) = layernorm(j, A(i,j))
T1(i,j) = masked_softmax(j, T0(i,j))
";
    verifies(src, Fusion::Expanded(vec![(0..6).collect(), (6..9).collect()]), None, true);
}

/// A softmax split after its row max, over a matrix product stored sparse: the max over a
/// row of the product must count the row's implicit zeros.
#[test]
fn max_of_a_fused_sparse_product_counts_implicit_zeros() {
    let src = "input A[3, 2] dense = random(density=0.3)
temp T0[3, 2] dense
input B1[2, 2] dcsr = random(density=0.3)
temp T1[3, 2] dcsr
output T2[3, 2] dense
T0(i,j) = A(i,j) - sum(m, A(i,m))
T1(i,j) = T0(i,k) * B1(k,j)
T2(i,j) = softmax(j, T1(i,j))
";
    let p = parse(src);
    let cfg = RunConfig {
        fusion: Fusion::Expanded(vec![vec![0, 1, 2], vec![3, 4, 5]]),
        seed: 1255807611297217268,
        ..RunConfig::default()
    };
    let r = fuseflow::run(&p, std::path::Path::new("."), &cfg).unwrap();
    assert!(r.verified, "{:?}", r.groups.iter().map(|g| &g.mismatch).collect::<Vec<_>>());
}
