//! Comal's timing quirks (`Quirks`, on in the `comal` preset): hand-computed schedules of the
//! primitives they change, and the guarantee that they change only when tokens move.
//!
//! Every input comes from a source that sends one token per cycle from cycle 0 with latency 1,
//! so token `i` of a stream is ready at cycle `i + 1`. The figure checked is the primitive's
//! own final clock: one cycle after its last fire (the one that sends `D`).

mod common;

use common::*;
use fuseflow_graph::ReduceKind;
use fuseflow_sim::prims::{CrdDrop, Reduce, Spacc1, Spacc2};
use fuseflow_sim::{HwConfig, Primitive, Quirks};

/// Runs `make(false)` and `make(true)` on the same inputs (unbounded channels); asserts equal
/// output streams (gaps included) and returns the primitive's final clock in both runs.
fn both(make: impl Fn(bool) -> Box<dyn Primitive>, inputs: &[Vec<fuseflow_sim::Token>], outs: usize) -> (u64, u64) {
    let plain = run_full(make(false), inputs.to_vec(), outs, None).unwrap();
    let quirk = run_full(make(true), inputs.to_vec(), outs, None).unwrap();
    for (p, (a, b)) in plain.outputs.iter().zip(&quirk.outputs).enumerate() {
        assert!(exact_eq(a, b), "port {p}: quirk gives {} but plain gives {}", fmt(b), fmt(a));
    }
    (plain.finish, quirk.finish)
}

#[test]
fn spacc1_drains_in_one_fire() {
    // Reduced k = [0, 1, S0, D]; inner j = [0, 2, S0, 1, S1, D] with values [1, 2, S0, 3, S1, D].
    let inputs = [toks("0, 1, S0, D"), toks("0, 2, S0, 1, S1, D"), vals("1, 2, S0, 3, S1, D")];
    let (plain, quirk) = both(|b| Box::new(Spacc1::new(ReduceKind::Sum).with_burst(b)), &inputs, 2);
    // Plain: fires at 1 (k=0), 2 and 3 (pairs), 4 (S0), 5 (k=1), 6 (pair), 7 (S1), 8 (outer S0),
    // 9-11 (three entries), 12 (stop), 13 (D): final clock 14.
    assert_eq!(plain, 14);
    // Comal: k taken with its fiber (no fire); pairs at 1, 2, stop at 3, pair at 4 (j=1 is
    // ready at 4), stop at 5; the drain waits for the next inner token (D, ready 6) and sends
    // all three entries and S0 at 6; D at 7: final clock 8.
    assert_eq!(quirk, 8);
}

#[test]
fn spacc2_drains_in_one_fire() {
    // Reduced k = [0, S0, D]; middle i = [0, 1, S1, D]; inner j and values under each i.
    let inputs = [toks("0, S0, D"), toks("0, 1, S1, D"), toks("3, S0, 4, S2, D"), vals("1, S0, 2, S2, D")];
    let (plain, quirk) = both(|b| Box::new(Spacc2::new(ReduceKind::Sum).with_burst(b)), &inputs, 3);
    // Plain: k at 1, i=0 at 2, j=3 at 3, S0 at 4, i=1 at 5, j=4 at 6, S2 at 7, middle S1 at 8,
    // outer S0 at 9, then the drain one step per fire: i=0, j=3, S0, i=1, j=4, S1, S0 at 10-16,
    // D at 17: final clock 18.
    assert_eq!(plain, 18);
    // Comal: k and i are taken without fires; steps at 1 (j=3), 2 (S0 ends i=0), 3 (j=4: i=1 is
    // ready at 2, j=4 at 3), 4 (S2 ends i=1); the middle S1 (ready 3) ends k once the next inner
    // token and value (D, ready 5) are there: 5; the drain waits for the middle, inner and value
    // heads (ready 4, 5, 5) and sends everything at 6; D at 7: final clock 8.
    assert_eq!(quirk, 8);
}

#[test]
fn crddrop_passes_inner_tokens_without_fires() {
    // Outer [0, 1, 2, S0, D]; inner [5, S0, S0, 6, 7, S1, D]: coordinate 1 is dropped.
    let inputs = [toks("0, 1, 2, S0, D"), toks("5, S0, S0, 6, 7, S1, D")];
    let (plain, quirk) = both(|b| Box::new(CrdDrop::default().with_free_inner(b)), &inputs, 2);
    // Plain: one fire per outer and inner token: 1 (0), 2 (5), 3 (S0), 4 (1), 5 (S0), 6 (2),
    // 7 (6), 8 (7), 9 (S1), 10 (outer S0), D at 11: final clock 12.
    assert_eq!(plain, 12);
    // Comal: one fire per outer token, at its fiber's stop: 2 (S0 of 0), 3 (S0 of 1), 6 (S1 of
    // 2, ready at 6), 7 (outer S0), D at 8 once the inner D (ready 7) is there: final clock 9.
    assert_eq!(quirk, 9);
}

#[test]
fn reduce_sends_value_and_stop_together() {
    let inputs = [vals("1, 2, S0, 3, S1, D")];
    let (plain, quirk) = both(|b| Box::new(Reduce::new(ReduceKind::Sum).with_stop_with_value(b)), &inputs, 1);
    // Plain: 1, 2, S0 at 3, 3 at 4, S1 at 5 (its value), the lowered S0 at 6, D at 7: clock 8.
    assert_eq!(plain, 8);
    // Comal: the value and S0 both leave the fire at 5; D at 6: final clock 7.
    assert_eq!(quirk, 7);
}

#[test]
fn only_the_comal_preset_has_quirks() {
    assert_eq!(HwConfig::preset("comal").unwrap().to_sim_config().timing.quirks, Quirks::comal());
    for p in ["ideal", "rda"] {
        assert_eq!(HwConfig::preset(p).unwrap().to_sim_config().timing.quirks, Quirks::default(), "{p}");
    }
    let mut h = HwConfig::preset("comal").unwrap();
    h.apply_override("timing.quirks.spacc_burst=false").unwrap();
    assert!(!h.to_sim_config().timing.quirks.spacc_burst);
    let e = h.apply_override("timing.quirks.fast=true").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("timing.quirks.fast"), "{e}");
    assert!(e.to_string().contains("spacc_burst"), "{e}");
    let e = h.apply_override("timing.quirks.spacc_burst=1").unwrap_err();
    assert!(e.to_string().contains("expected true or false"), "{e}");
}
