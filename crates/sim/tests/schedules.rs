//! Hand-computed schedules: small graphs whose cycle counts are derived by hand from the timing
//! model (docs/hardware.md, *The timing model* and *Per primitive*), so that any change of
//! timing shows up here as a deliberate change.
//!
//! The graph is a 3-element dense vector streamed through scan → array → ALU → writers:
//! `root → scan_dense[A, size 3] → array[A] → alu[neg] → val_write`, and the scanner's
//! coordinates → level_write.

use std::collections::BTreeMap;

use fuseflow_graph::{AluOp, Graph, Op, OutputBinding, TensorBinding};
use fuseflow_sim::{simulate, SimConfig, Timing};
use fuseflow_tensor::{Format, LevelFormat, Tensor};

fn graph() -> Graph {
    let mut g = Graph::new("scan_alu_write");
    g.inputs.push(TensorBinding {
        tensor: "A".into(),
        shape: vec![3],
        levels: vec![LevelFormat::Dense],
        mode_order: vec![0],
    });
    let root = g.add(Op::Root, &[], "root")[0];
    let scan = Op::Scan { tensor: "A".into(), level: 0, dim: 0, format: LevelFormat::Dense, index: "i".into() };
    let s = g.add(scan, &[root], "A_i");
    let v = g.add(Op::Array { tensor: "A".into() }, &[s[1]], "A_vals")[0];
    let n = g.add(Op::Alu { op: AluOp::Neg }, &[v], "neg")[0];
    g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[s[0]], "X_w0");
    g.add(Op::ValWrite { tensor: "X".into() }, &[n], "X_wvals");
    g.outputs.push(OutputBinding { tensor: "X".into(), shape: vec![3], dims: vec![0] });
    g.verify().unwrap();
    g
}

fn run(timing: Timing, capacity: Option<usize>) -> (u64, Vec<u64>) {
    let a = Tensor::from_dense(&[3], &[1.0, 2.0, 3.0], &Format::dense(1)).unwrap();
    let tensors = BTreeMap::from([("A".to_string(), a)]);
    let cfg = SimConfig { timing, channel_capacity: capacity, ..SimConfig::default() };
    let r = simulate(&graph(), &tensors, &cfg).unwrap();
    assert_eq!(r.outputs["X"].vals, vec![-1.0, -2.0, -3.0]);
    (r.cycles, r.nodes.iter().map(|n| n.finish).collect())
}

fn timing(per_kind: &[(&str, (u64, u64))]) -> Timing {
    Timing {
        ii: 1,
        latency: 1,
        per_kind: per_kind.iter().map(|&(k, t)| (k.to_string(), t)).collect(),
        ..Timing::default()
    }
}

/// II 1 and latency 1 everywhere.
///
/// - root fires at 0 (`0`, ready 1) and 1 (`D`, ready 2): clock 2.
/// - scan takes the reference for free and fires at 1, 2, 3 (coordinates ready 2, 3, 4); the
///   closing stop waits for the next input token (`D`, ready 2) and fires at 4 (ready 5); `D`
///   fires at 5 (ready 6): clock 6.
/// - array: references ready 2, 3, 4, stop 5, `D` 6 → fires 2, 3, 4, 5, 6: clock 7.
/// - alu: 3, 4, 5, 6, 7: clock 8.
/// - level_write: coordinates ready 2, 3, 4 and the stop closing its level (5) are fires, and so
///   is `D` (6): clock 7.
/// - val_write: values ready 4, 5, 6 → fires 4, 5, 6; the stop (7) is free; `D` (8) is a fire:
///   clock 9.
///
/// Total: the largest clock, 9.
#[test]
fn unit_timing() {
    let (cycles, finish) = run(timing(&[]), None);
    assert_eq!(finish, vec![2, 6, 7, 8, 7, 9]);
    assert_eq!(cycles, 9);
}

/// Scanner latency 3 and ALU initiation interval 2, the rest 1/1.
///
/// - root as before: ready 1 and 2.
/// - scan fires at 1, 2, 3 (ready 4, 5, 6), the stop at 4 (ready 7), `D` at 5 (ready 8): clock 6.
/// - array: fires 4, 5, 6, 7, 8 (ready 5, 6, 7, 8, 9): clock 9.
/// - alu (II 2): fires at 5, 7, 9 (values ready 6, 8, 10), the stop at 11 (ready 12), `D` at 13
///   (ready 14): clock 15.
/// - level_write: coordinates ready 4, 5, 6, stop 7, `D` 8 → fires 4 … 8: clock 9.
/// - val_write: fires 6, 8, 10, the stop is free, `D` fires at 14: clock 15.
///
/// Total 15.
#[test]
fn slow_scanner_and_alu() {
    let t = timing(&[("scan_dense", (1, 3)), ("alu", (2, 1))]);
    let (cycles, finish) = run(t, None);
    assert_eq!(finish, vec![2, 6, 9, 15, 9, 15]);
    assert_eq!(cycles, 15);
}

/// One-slot channels at unit timing: a producer's next send waits for the cycle after its
/// consumer took the previous token, so every hop passes one token every 2 cycles.
///
/// - root: `0` at 0 (ready 1); the scanner takes it at its first fire (1), so `D` goes at 2
///   (ready 3): clock 3.
/// - scan: coordinate/reference pairs at 1, 3, 5 (ready 2, 4, 6; its consumers take them then),
///   the stop at 7 (ready 8), `D` at 9 (ready 10): clock 10.
/// - array: references ready 2, 4, 6, stop 8, `D` 10, each taken as it arrives, and the ALU
///   frees the slot in time: fires 2, 4, 6, 8, 10: clock 11.
/// - alu: inputs ready 3, 5, 7, 9, 11 → fires there: clock 12.
/// - level_write: 2, 4, 6, 8 and `D` at 10: clock 11.
/// - val_write: values ready 4, 6, 8 (fires), the stop at 10 (free), `D` at 12 (fire): clock 13.
///
/// Total 13.
#[test]
fn one_slot_channels_halve_the_rate() {
    let (cycles, finish) = run(timing(&[]), Some(1));
    assert_eq!(finish, vec![3, 10, 11, 12, 11, 13]);
    assert_eq!(cycles, 13);
}
