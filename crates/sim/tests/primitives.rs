//! Unit tests of every simulator primitive on literal token streams, including every worked
//! trace of sam-semantics.md §3, §4 and §5. Each stream check runs under several channel
//! capacities (unbounded down to one slot) and requires identical results.

mod common;

use std::sync::Arc;

use common::*;
use fuseflow_graph::{AluOp, JoinKind, ReduceKind, ScalarOp};
use fuseflow_sim::prims::{
    scan::LevelSource, Alu, Array, CrdDrop, Join, LevelWrite, Locate, Reduce, RepSig, Repeat, Root, Scan, Spacc1,
    Spacc2, ValWrite,
};
use fuseflow_sim::{Primitive, SimError, Token, Written};

// ---------------------------------------------------------------------------------------------
// Constructors (each returns a factory, since every check builds a fresh primitive per run).

fn scan_c(seg: &[u32], crd: &[u32]) -> impl Fn() -> Box<dyn Primitive> {
    let (seg, crd) = (Arc::new(seg.to_vec()), Arc::new(crd.to_vec()));
    move || Box::new(Scan::new(LevelSource::Compressed { seg: seg.clone(), crd: crd.clone() }))
}

fn scan_d(n: u32) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Scan::new(LevelSource::Dense(n)))
}

fn array(v: &[f64]) -> impl Fn() -> Box<dyn Primitive> {
    let v = Arc::new(v.to_vec());
    move || Box::new(Array::new(v.clone()))
}

fn join(kind: JoinKind, payloads: &[u32]) -> impl Fn() -> Box<dyn Primitive> {
    let payloads = payloads.to_vec();
    move || Box::new(Join::new(kind, &payloads))
}

fn alu(op: AluOp) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Alu::new(op))
}

fn reduce(op: ReduceKind) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Reduce::new(op))
}

fn repsig() -> Box<dyn Primitive> {
    Box::<RepSig>::default()
}

fn repeat() -> Box<dyn Primitive> {
    Box::<Repeat>::default()
}

fn crddrop() -> Box<dyn Primitive> {
    Box::<CrdDrop>::default()
}

fn spacc1(op: ReduceKind) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Spacc1::new(op))
}

fn spacc2(op: ReduceKind) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Spacc2::new(op))
}

fn scalar(op: ScalarOp, c: f64, scalar_first: bool) -> AluOp {
    AluOp::Scalar { op, scalar: c, scalar_first }
}

/// Runs a level writer (under every capacity) and returns `(seg, crd)`.
#[track_caller]
fn write_level(stream: &[Token]) -> (Vec<u32>, Vec<u32>) {
    match run_writer_all_caps(|| Box::<LevelWrite>::default(), &[stream.to_vec()]) {
        Ok(Written::Level { seg, crd }) => (seg, crd),
        other => panic!("level writer: {other:?}"),
    }
}

/// Runs a value writer (under every capacity) and returns the values.
#[track_caller]
fn write_vals(stream: &[Token]) -> Vec<f64> {
    match run_writer_all_caps(|| Box::<ValWrite>::default(), &[stream.to_vec()]) {
        Ok(Written::Vals(v)) => v,
        other => panic!("value writer: {other:?}"),
    }
}

/// RepSig on `signal`, then Repeat of `payload` by it; checks the repeat output.
#[track_caller]
fn repeat_by(payload: &[Token], signal: &[Token], expected: &str) -> Vec<Token> {
    let sig = run_all_caps(repsig, &[signal.to_vec()], 1).expect("repsig runs").remove(0);
    check(repeat, &[payload.to_vec(), sig], &[expected]).remove(0)
}

// The running example of sam-semantics.md §1: B (4×4) with (0,1)=1, (1,0)=2, (1,2)=3,
// (3,1)=4, (3,3)=5, and C for §5 with (0,2)=6, (1,0)=7, (1,3)=8, (3,3)=9.
const B_VALS: [f64; 5] = [1.0, 2.0, 3.0, 4.0, 5.0];
/// B as DCSR.
const B0_SEG: [u32; 2] = [0, 3];
const B0_CRD: [u32; 3] = [0, 1, 3];
const B1_SEG: [u32; 4] = [0, 1, 3, 5];
const B1_CRD: [u32; 5] = [1, 0, 2, 1, 3];
/// C as DCSR (rows k, then j).
const CR0_SEG: [u32; 2] = [0, 3];
const CR0_CRD: [u32; 3] = [0, 1, 3];
const CR1_SEG: [u32; 4] = [0, 1, 3, 4];
const CR1_CRD: [u32; 4] = [2, 0, 3, 3];
const CR_VALS: [f64; 4] = [6.0, 7.0, 8.0, 9.0];

// ---------------------------------------------------------------------------------------------
// Root generator

#[test]
fn root_emits_zero_then_done() {
    let out = run_all_caps(|| Box::<Root>::default(), &[], 1).unwrap();
    assert_toks(&out[0], "0, D", "root");
}

// ---------------------------------------------------------------------------------------------
// Level scanners (§3, §4.2, §4.3)

#[test]
fn scan_dcsr_section3() {
    let bi = check(scan_c(&B0_SEG, &B0_CRD), &[toks("0, D")], &["0, 1, 3, S0, D", "0, 1, 2, S0, D"]);
    let bj = check(
        scan_c(&B1_SEG, &B1_CRD),
        &[bi[1].clone()],
        &["1, S0, 0, 2, S0, 1, 3, S1, D", "0, S0, 1, 2, S0, 3, 4, S1, D"],
    );
    check(array(&B_VALS), &[bj[1].clone()], &["1, S0, 2, 3, S0, 4, 5, S1, D"]);
}

#[test]
fn scan_csr_section3_empty_row_is_a_real_empty_fiber() {
    let ai = check(scan_d(4), &[toks("0, D")], &["0, 1, 2, 3, S0, D", "0, 1, 2, 3, S0, D"]);
    // Row 2 is empty: a bare S0 with gap 0 (a fiber of this level that holds nothing).
    let aj = check_exact(
        scan_c(&[0, 1, 3, 3, 5], &B1_CRD),
        &[ai[1].clone()],
        &["1, S0, 0, 2, S0, S0, 1, 3, S1, D", "0, S0, 1, 2, S0, S0, 3, 4, S1, D"],
    );
    // Its writer stores exactly one segment per row, i.e. the CSR seg array itself.
    assert_eq!(write_level(&aj[0]), (vec![0, 1, 3, 3, 5], B1_CRD.to_vec()));
}

#[test]
fn scan_empty_parent_fiber_section3() {
    // Input refs [a, S0, S0, b, S1, D] with fiber(a) = (x), fiber(b) = (y, z).
    let (a, b, x, y, z) = (0, 1, 5, 6, 7);
    let input = toks(&format!("{a}, S0, S0, {b}, S1, D"));
    // The bare S0 (an empty parent fiber) becomes S1 with gap 1: no fiber of this level.
    check_exact(
        scan_c(&[0, 1, 3], &[x, y, z]),
        &[input],
        &[&format!("{x}, S1, S1'1, {y}, {z}, S2, D"), "0, S1, S1'1, 1, 2, S2, D"],
    );
}

#[test]
fn scan_ambiguity_section2_2_resolved_by_gap() {
    // [a, S0, S0, b, S1, D] (middle parent fiber empty) and [a, S0, c, S0, b, S1, D] with
    // fiber(c) empty give the same SAM tokens; the gap tells them apart.
    let seg = [0, 1, 1, 3]; // a = 0 → (5), c = 1 → (), b = 2 → (6, 7)
    let crd = [5, 6, 7];
    let empty_parent = check_exact(
        scan_c(&seg, &crd),
        &[toks("0, S0, S0, 2, S1, D")],
        &["5, S1, S1'1, 6, 7, S2, D", "0, S1, S1'1, 1, 2, S2, D"],
    );
    let empty_child = check_exact(
        scan_c(&seg, &crd),
        &[toks("0, S0, 1, S0, 2, S1, D")],
        &["5, S1, S1, 6, 7, S2, D", "0, S1, S1, 1, 2, S2, D"],
    );
    assert!(sam_eq(&empty_parent[0], &empty_child[0]));
    assert!(!exact_eq(&empty_parent[0], &empty_child[0]));
    // A writer of this level stores a segment for fiber(c) but none for the empty parent.
    assert_eq!(write_level(&empty_parent[0]).0, vec![0, 1, 3]);
    assert_eq!(write_level(&empty_child[0]).0, vec![0, 1, 1, 3]);
}

#[test]
fn scan_n_reference_section4_2() {
    // Fibers 0 → (0, 1), 1 → (2), 2 → (3); [rec] (= sam-sim): N expands to [N, S…].
    check(
        scan_c(&[0, 2, 3, 4], &[0, 1, 2, 3]),
        &[toks("0, 1, N, 2, N, S0, D")],
        &["0, 1, S0, 2, S0, N, S0, 3, S0, N, S1, D", "0, 1, S0, 2, S0, N, S0, 3, S0, N, S1, D"],
    );
}

#[test]
fn scan_empty_segment_emits_only_the_stop() {
    check_exact(scan_c(&[0, 0, 2], &[4, 9]), &[toks("0, 1, S0, D")], &["S0, 4, 9, S1, D", "S0, 0, 1, S1, D"]);
    check_exact(scan_c(&[0, 0], &[]), &[toks("0, D")], &["S0, D", "S0, D"]);
}

#[test]
fn scan_dense_section4_3() {
    let n = 3;
    check(scan_d(n), &[toks("0, D")], &["0, 1, 2, S0, D", "0, 1, 2, S0, D"]);
    check(
        scan_d(n),
        &[toks("0, 1, 2, 3, S0, D")],
        &[
            "0, 1, 2, S0, 0, 1, 2, S0, 0, 1, 2, S0, 0, 1, 2, S1, D",
            "0, 1, 2, S0, 3, 4, 5, S0, 6, 7, 8, S0, 9, 10, 11, S1, D",
        ],
    );
}

#[test]
fn scan_dense_control_tokens_follow_the_compressed_rules() {
    // [rec]: bare stops and N on a dense scanner behave as in §4.2 (sam-sim raises an error).
    check_exact(scan_d(2), &[toks("1, S0, S0, N, S1, D")], &["0, 1, S1, S1'1, N, S2, D", "2, 3, S1, S1'1, N, S2, D"]);
}

#[test]
fn scan_bare_stop_gaps_accumulate() {
    // A bare S_k with gap g becomes S_{k+1} with gap g+1.
    check_exact(scan_d(2), &[toks("S1'1, D")], &["S2'2, D", "S2'2, D"]);
    check_exact(scan_c(&[0, 1], &[3]), &[toks("0, S1, S1'1, D")], &["3, S2, S2'2, D", "0, S2, S2'2, D"]);
}

#[test]
fn scan_done_only() {
    check(scan_d(4), &[toks("D")], &["D", "D"]);
    check(scan_c(&[0], &[]), &[toks("D")], &["D", "D"]);
}

#[test]
fn scan_errors_are_protocol_errors() {
    let m = check_protocol_error(scan_c(&B1_SEG, &B1_CRD), &[toks("3, S0, D")], 2);
    assert!(m.contains("out of range"), "{m}");
    check_protocol_error(scan_c(&B1_SEG, &B1_CRD), &[vals("1.5, S0, D")], 2);
    check_protocol_error(scan_c(&B1_SEG, &B1_CRD), &[toks("R, S0, D")], 2);
    // A malformed level (segment past the end of crd) is reported, not a panic.
    let m = check_protocol_error(scan_c(&[0, 4], &[1, 2]), &[toks("0, D")], 2);
    assert!(m.contains("malformed"), "{m}");
    check_protocol_error(scan_d(1 << 31), &[toks("2, D")], 2);
}

#[test]
fn scan_truncated_input_is_a_deadlock_not_a_panic() {
    let err = run_prim(scan_c(&B0_SEG, &B0_CRD)(), vec![toks("0")], 2, None).unwrap_err();
    assert!(matches!(err, SimError::Deadlock { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Repeat-signal generator and repeater (§4.4)

#[test]
fn repsig_maps_data_and_n_to_r_and_stops_to_s() {
    check(repsig, &[toks("0, 1, S0, 2, S0, 3, S1, D")], &["R, R, S, R, S, R, S, D"]);
    check(repsig, &[toks("1, S0, N, S0, 1, S1, D")], &["R, S, R, S, R, S, D"]);
    // A value stream can drive it too; stop levels are dropped.
    check(repsig, &[vals("2.5, S0, S2'1, -1, S1, D")], &["R, S, S, R, S, D"]);
    check(repsig, &[toks("D")], &["D"]);
}

#[test]
fn repeat_section4_4_table() {
    // Counts 2, 1, 1.
    check(repeat, &[toks("0, 1, 2, S0, D"), toks("R, R, S, R, S, R, S, D")], &["0, 0, S0, 1, S0, 2, S1, D"]);
    // Counts 3, 3, 1, 2.
    check(
        repeat,
        &[toks("0, S0, 1, 2, 3, S1, D"), toks("R, R, R, S, R, R, R, S, R, S, R, R, S, D")],
        &["0, 0, 0, S1, 1, 1, 1, S0, 2, S0, 3, 3, S2, D"],
    );
    // Head N is repeated like data and closed with look-ahead.
    check(repeat, &[toks("N, 0, 1, S0, D"), toks("R, S, R, S, R, S, D")], &["N, S0, 0, S0, 1, S1, D"]);
    // Root repeater driven by a crd stream through the signal generator.
    repeat_by(&toks("0, D"), &toks("0, 2, 6, 8, 9, S0, D"), "0, 0, 0, 0, 0, S0, D");
}

#[test]
fn repeat_head_n_at_end_of_parent_fiber_uses_look_ahead() {
    // §4.4: refs [0, N, S0, 1, S1, D] with counts 1, 1, 1 give [0, S0, N, S1, 1, S2, D]
    // ([rec] = sam-sim; Comal corrupts this stream).
    check(repeat, &[toks("0, N, S0, 1, S1, D"), toks("R, S, R, S, R, S, D")], &["0, S0, N, S1, 1, S2, D"]);
}

#[test]
fn repeat_empty_parent_fibers() {
    // A stop head under S is an empty parent fiber: S_k → S_{k+1} with gap + 1.
    check_exact(repeat, &[toks("0, S0, S0, 1, S1, D"), toks("R, S, S, R, S, D")], &["0, S1, S1'1, 1, S2, D"]);
    check(
        repeat,
        &[toks("0, S0, S0, S0, S0, S0, S0, S0, S1, D"), toks("R, S, S, S, S, S, S, S, S, D")],
        &["0, S1, S1, S1, S1, S1, S1, S1, S2, D"],
    );
    // Zero repetitions of a data head give an empty (real) fiber.
    check_exact(repeat, &[toks("0, S0, 1, S1, D"), toks("S, R, S, D")], &["S1, 1, S2, D"]);
}

#[test]
fn repeat_value_payload() {
    // Broadcasting a per-row value (e.g. a row max) back over the row's refs.
    let row_refs = toks("0, 1, S0, 0, S1, D");
    repeat_by(&vals("1.5, 2.5, S0, D"), &row_refs, "1.5, 1.5, S0, 2.5, S1, D");
}

#[test]
fn repeat_needs_only_one_buffered_payload_token() {
    // The look-ahead must not need two tokens in the payload channel (capacity 1 used to
    // deadlock here).
    for cap in [Some(1), Some(2), None] {
        let out = run_prim(repeat(), vec![toks("0, 1, 2, S0, D"), toks("R, R, S, R, S, R, S, D")], 1, cap).unwrap();
        assert_toks(&out[0], "0, 0, S0, 1, S0, 2, S1, D", &format!("capacity {cap:?}"));
    }
}

#[test]
fn repeat_errors_are_protocol_errors() {
    // R against a stop or done payload.
    check_protocol_error(repeat, &[toks("S0, D"), toks("R, S, D")], 1);
    check_protocol_error(repeat, &[toks("D"), toks("R, S, D")], 1);
    // S against a done payload.
    check_protocol_error(repeat, &[toks("D"), toks("S, D")], 1);
    // [rec]: both inputs must be at D together.
    let m = check_protocol_error(repeat, &[toks("0, 1, S0, D"), toks("R, S, D")], 1);
    assert!(m.contains("done"), "{m}");
    // A coordinate on the signal port.
    check_protocol_error(repeat, &[toks("0, D"), toks("3, S, D")], 1);
}

// ---------------------------------------------------------------------------------------------
// Intersecter and unioner (§4.5, §4.6)

#[test]
fn intersect_two_operands() {
    check(
        join(JoinKind::Intersect, &[1, 1]),
        &[
            toks("0, 2, 6, 8, 9, S0, D"),
            toks("0, 1, 2, 3, 4, S0, D"),
            toks("2, 4, 6, 7, 8, S0, D"),
            toks("0, 1, 2, 3, 4, S0, D"),
        ],
        &["2, 6, 8, S0, D", "1, 2, 3, S0, D", "0, 2, 4, S0, D"],
    );
}

#[test]
fn intersect_empty_output_fibers_survive_as_bare_stops() {
    check_exact(
        join(JoinKind::Intersect, &[1, 1]),
        &[
            toks("1, 3, S0, 5, S0, 2, S1, D"),
            toks("0, 1, S0, 2, S0, 3, S1, D"),
            toks("1, S0, 4, S0, 2, S1, D"),
            toks("0, S0, 1, S0, 2, S1, D"),
        ],
        &["1, S0, S0, 2, S1, D", "0, S0, S0, 3, S1, D", "0, S0, S0, 2, S1, D"],
    );
}

#[test]
fn intersect_three_operands_with_several_payloads() {
    // Operand 0: crd + ref + val; operand 1: crd + ref; operand 2: crd only.
    let ins = [
        toks("0, 1, 3, 5, S0, 2, S1, D"),
        toks("0, 1, 2, 3, S0, 4, S1, D"),
        vals("10, 11, 13, 15, S0, 12, S1, D"),
        toks("1, 3, 4, 5, S0, S1, D"),
        toks("7, 8, 9, 10, S0, S1, D"),
        toks("0, 1, 5, S0, 2, S1, D"),
    ];
    check(
        join(JoinKind::Intersect, &[2, 1, 0]),
        &ins,
        &["1, 5, S0, S1, D", "1, 3, S0, S1, D", "11, 15, S0, S1, D", "7, 10, S0, S1, D"],
    );
}

#[test]
fn intersect_n_fiber_is_empty() {
    // [rec]: an operand whose fiber is [N, S…] is empty, so the output fiber is empty and the
    // other operands' fibers are drained.
    check(
        join(JoinKind::Intersect, &[1, 1]),
        &[toks("N, S0, D"), toks("N, S0, D"), toks("3, 5, S0, D"), toks("0, 1, S0, D")],
        &["S0, D", "S0, D", "S0, D"],
    );
    check(
        join(JoinKind::Intersect, &[1, 1]),
        &[
            toks("1, 2, S0, 1, 2, S0, 1, 2, S1, D"),
            toks("0, 1, S0, 0, 1, S0, 0, 1, S1, D"),
            toks("1, S0, N, S0, 1, S1, D"),
            toks("0, S0, N, S0, 1, S1, D"),
        ],
        &["1, S0, S0, 1, S1, D", "0, S0, S0, 0, S1, D", "0, S0, S0, 1, S1, D"],
    );
}

#[test]
fn intersect_errors_are_protocol_errors() {
    let j = join(JoinKind::Intersect, &[1, 1]);
    // Stop levels disagree.
    let m = check_protocol_error(&j, &[toks("1, S0, D"), toks("0, S0, D"), toks("1, S1, D"), toks("0, S1, D")], 3);
    assert!(m.contains("stop level"), "{m}");
    // One operand finishes early.
    check_protocol_error(
        &j,
        &[toks("1, S0, D"), toks("0, S0, D"), toks("1, S0, 2, S1, D"), toks("0, S0, 1, S1, D")],
        3,
    );
    // A payload out of step with its crd stream.
    let m = check_protocol_error(&j, &[toks("1, S0, D"), toks("0, 1, S0, D"), toks("1, S0, D"), toks("0, S0, D")], 3);
    assert!(m.contains("payload"), "{m}");
    // A value on a crd stream.
    check_protocol_error(&j, &[vals("1, S0, D"), toks("0, S0, D"), toks("1, S0, D"), toks("0, S0, D")], 3);
}

#[test]
fn union_fig5() {
    let ins = [
        toks("0, 2, 6, 8, 9, S0, D"),
        toks("0, 1, 2, 3, 4, S0, D"),
        toks("2, 4, 6, 7, 8, S0, D"),
        toks("0, 1, 2, 3, 4, S0, D"),
    ];
    check(
        join(JoinKind::Union, &[1, 1]),
        &ins,
        &["0, 2, 4, 6, 7, 8, 9, S0, D", "0, 1, N, 2, N, 3, 4, S0, D", "N, 0, 1, 2, 3, 4, N, S0, D"],
    );
}

#[test]
fn union_fig5_with_a_third_operand_of_two_payloads() {
    let ins = [
        toks("0, 2, 6, 8, 9, S0, D"),
        toks("0, 1, 2, 3, 4, S0, D"),
        toks("2, 4, 6, 7, 8, S0, D"),
        toks("0, 1, 2, 3, 4, S0, D"),
        toks("1, 9, S0, D"),
        toks("0, 1, S0, D"),
        vals("1.5, 2.5, S0, D"),
    ];
    check(
        join(JoinKind::Union, &[1, 1, 2]),
        &ins,
        &[
            "0, 1, 2, 4, 6, 7, 8, 9, S0, D",
            "0, N, 1, N, 2, N, 3, 4, S0, D",
            "N, N, 0, 1, 2, 3, 4, N, S0, D",
            "N, 0, N, N, N, N, N, 1, S0, D",
            "N, 1.5, N, N, N, N, N, 2.5, S0, D",
        ],
    );
}

#[test]
fn union_two_level_example_section4_6() {
    // X = B + C with B row 0 = {1:1}, row 2 = {0:2, 3:3}; C row 1 = {2:4}, row 2 = {3:5}.
    let (b0, b1, bv) = (scan_c(&[0, 2], &[0, 2]), scan_c(&[0, 1, 3], &[1, 0, 3]), array(&[1.0, 2.0, 3.0]));
    let (c0, c1, cv) = (scan_c(&[0, 2], &[1, 2]), scan_c(&[0, 1, 2], &[2, 3]), array(&[4.0, 5.0]));
    let bi = check(&b0, &[toks("0, D")], &["0, 2, S0, D", "0, 1, S0, D"]);
    let ci = check(&c0, &[toks("0, D")], &["1, 2, S0, D", "0, 1, S0, D"]);
    let ui = check(
        join(JoinKind::Union, &[1, 1]),
        &[bi[0].clone(), bi[1].clone(), ci[0].clone(), ci[1].clone()],
        &["0, 1, 2, S0, D", "0, N, 1, S0, D", "N, 0, 1, S0, D"],
    );
    let bj = check(&b1, &[ui[1].clone()], &["1, S0, N, S0, 0, 3, S1, D", "0, S0, N, S0, 1, 2, S1, D"]);
    let cj = check(&c1, &[ui[2].clone()], &["N, S0, 2, S0, 3, S1, D", "N, S0, 0, S0, 1, S1, D"]);
    let uj = check(
        join(JoinKind::Union, &[1, 1]),
        &[bj[0].clone(), bj[1].clone(), cj[0].clone(), cj[1].clone()],
        &["1, S0, 2, S0, 0, 3, S1, D", "0, S0, N, S0, 1, 2, S1, D", "N, S0, 0, S0, N, 1, S1, D"],
    );
    let bvals = check(&bv, &[uj[1].clone()], &["1, S0, 0, S0, 2, 3, S1, D"]);
    let cvals = check(&cv, &[uj[2].clone()], &["0, S0, 4, S0, 0, 5, S1, D"]);
    let add = check(alu(AluOp::Add), &[bvals[0].clone(), cvals[0].clone()], &["1, S0, 4, S0, 2, 8, S1, D"]);
    assert_eq!(write_level(&ui[0]), (vec![0, 3], vec![0, 1, 2]));
    assert_eq!(write_level(&uj[0]), (vec![0, 1, 2, 4], vec![1, 2, 0, 3]));
    assert_eq!(write_vals(&add[0]), vec![1.0, 4.0, 2.0, 8.0]);
}

#[test]
fn union_n_fiber_is_empty() {
    // [rec]: [1, S0] ∪ [N, S0] is [1, S0], not the SAM simulator's [1, N, S0].
    check(
        join(JoinKind::Union, &[1, 1]),
        &[toks("1, S0, D"), toks("7, S0, D"), toks("N, S0, D"), toks("N, S0, D")],
        &["1, S0, D", "7, S0, D", "N, S0, D"],
    );
}

#[test]
fn union_empty_fibers_and_stop_gaps() {
    check_exact(
        join(JoinKind::Union, &[1, 1]),
        &[
            toks("1, S0, S0, 2, S1, S1'1, D"),
            toks("0, S0, S0, 1, S1, S1'1, D"),
            toks("S0, 3, S0, S1, S1'1, D"),
            toks("S0, 0, S0, S1, S1'1, D"),
        ],
        &["1, S0, 3, S0, 2, S1, S1'1, D", "0, S0, N, S0, 1, S1, S1'1, D", "N, S0, 0, S0, N, S1, S1'1, D"],
    );
}

#[test]
fn union_errors_are_protocol_errors() {
    let u = join(JoinKind::Union, &[1, 1]);
    check_protocol_error(&u, &[toks("1, S0, D"), toks("0, S0, D"), toks("2, S1, D"), toks("0, S1, D")], 3);
    check_protocol_error(&u, &[toks("1, S0, D"), toks("S0, D"), toks("2, S0, D"), toks("0, S0, D")], 3);
    check_protocol_error(&u, &[toks("1, S0, D"), toks("0, S0, D"), toks("D"), toks("D")], 3);
}

#[test]
fn join_done_only() {
    check(join(JoinKind::Union, &[1, 1]), &[toks("D"), toks("D"), toks("D"), toks("D")], &["D", "D", "D"]);
    check(join(JoinKind::Intersect, &[0, 0]), &[toks("D"), toks("D")], &["D"]);
}

// ---------------------------------------------------------------------------------------------
// Locator (§4.7)

#[test]
fn locate_computes_dense_positions() {
    let loc = || -> Box<dyn Primitive> { Box::new(Locate::new(4)) };
    check_exact(
        loc,
        &[toks("0, 2, S0, 1, S1, S1'1, D"), toks("0, 0, S0, 1, S1, S1'1, D")],
        &["0, 2, S0, 5, S1, S1'1, D"],
    );
    check(loc, &[toks("N, S0, 3, S1, D"), toks("2, S0, 1, S1, D")], &["N, S0, 7, S1, D"]);
    check(loc, &[toks("D"), toks("D")], &["D"]);
}

#[test]
fn locate_errors_are_protocol_errors() {
    let loc = || -> Box<dyn Primitive> { Box::new(Locate::new(4)) };
    check_protocol_error(loc, &[toks("4, S0, D"), toks("0, S0, D")], 1);
    check_protocol_error(loc, &[toks("1, S0, D"), toks("0, S1, D")], 1);
    check_protocol_error(loc, &[toks("1, S0, D"), toks("S0, D")], 1);
    // N against a stop is misaligned too.
    check_protocol_error(loc, &[toks("N, S0, D"), toks("S0, D")], 1);
    check_protocol_error(loc, &[toks("1, D"), toks("0, S0, D")], 1);
}

// ---------------------------------------------------------------------------------------------
// Array (§4.8)

#[test]
fn array_loads_values_and_passes_control() {
    check_exact(array(&[1.0, 2.0, 3.0, 4.0]), &[toks("0, 1, S0, N, S1'1, 3, S2, D")], &["1, 2, S0, 0, S1'1, 4, S2, D"]);
    check(array(&[]), &[toks("S0, D")], &["S0, D"]);
}

#[test]
fn array_errors_are_protocol_errors() {
    let m = check_protocol_error(array(&[1.0]), &[toks("1, S0, D")], 1);
    assert!(m.contains("out of range"), "{m}");
    check_protocol_error(array(&[1.0]), &[vals("0.5, S0, D")], 1);
}

// ---------------------------------------------------------------------------------------------
// ALU (§4.9)

#[test]
fn alu_binary_ops() {
    let (a, b) = (vals("6, -2, S0, 3, S1, D"), vals("3, 4, S0, -1.5, S1, D"));
    check(alu(AluOp::Add), &[a.clone(), b.clone()], &["9, 2, S0, 1.5, S1, D"]);
    check(alu(AluOp::Sub), &[a.clone(), b.clone()], &["3, -6, S0, 4.5, S1, D"]);
    check(alu(AluOp::Mul), &[a.clone(), b.clone()], &["18, -8, S0, -4.5, S1, D"]);
    check(alu(AluOp::Div), &[a.clone(), b.clone()], &["2, -0.5, S0, -2, S1, D"]);
    check(alu(AluOp::Max), &[a, b], &["6, 4, S0, 3, S1, D"]);
}

#[test]
fn alu_n_counts_as_zero() {
    let (a, b) = (vals("N, 2, N, S0, D"), vals("5, N, N, S0, D"));
    check(alu(AluOp::Add), &[a.clone(), b.clone()], &["5, 2, 0, S0, D"]);
    check(alu(AluOp::Sub), &[a.clone(), b.clone()], &["-5, 2, 0, S0, D"]);
    check(alu(AluOp::Mul), &[a.clone(), b.clone()], &["0, 0, 0, S0, D"]);
    check(alu(AluOp::Max), &[vals("N, -3, S0, D"), vals("-1, N, S0, D")], &["0, 0, S0, D"]);
    // An absent numerator: 0 / x = 0.
    check(alu(AluOp::Div), &[vals("N, S0, D"), vals("4, S0, D")], &["0, S0, D"]);
}

#[test]
fn alu_unary_and_scalar_ops() {
    let x = [vals("-2, 0, 3, S0, 1, S1, D")];
    check(alu(AluOp::Neg), &x, &["2, 0, -3, S0, -1, S1, D"]);
    check(alu(AluOp::Relu), &x, &["0, 0, 3, S0, 1, S1, D"]);
    check(alu(scalar(ScalarOp::Mul, 2.0, false)), &x, &["-4, 0, 6, S0, 2, S1, D"]);
    check(alu(scalar(ScalarOp::Sub, 1.0, true)), &x, &["3, 1, -2, S0, 0, S1, D"]);
    check(alu(scalar(ScalarOp::Sub, 1.0, false)), &x, &["-3, -1, 2, S0, 0, S1, D"]);
    let e = run_all_caps(alu(AluOp::Exp), &[vals("0, 1, S0, D")], 1).unwrap();
    assert_toks(&e[0], &format!("1.0, {:?}, S0, D", 1f64.exp()), "exp");
    let s = run_all_caps(alu(AluOp::Sigmoid), &[vals("0, S0, D")], 1).unwrap();
    assert_toks(&s[0], "0.5, S0, D", "sigmoid");
    let r = run_all_caps(alu(AluOp::Rsqrt), &[vals("4, S0, D")], 1).unwrap();
    assert_toks(&r[0], "0.5, S0, D", "rsqrt");
}

#[test]
fn alu_unary_n_computes_f_of_zero() {
    // The compiler iterates f(0) ≠ 0 operations densely (a union with a range); an accumulator's
    // value stream then carries N where it has no entry, and the ALU must produce f(0) there.
    check(alu(AluOp::Relu), &[vals("N, 2, S0, D")], &["0, 2, S0, D"]);
    check(alu(AluOp::Neg), &[vals("N, S0, D")], &["0, S0, D"]);
    check(alu(AluOp::Gelu), &[vals("N, S0, D")], &["0, S0, D"]);
    check(alu(AluOp::Exp), &[vals("N, 0, S0, D")], &["1, 1, S0, D"]);
    check(alu(AluOp::Sigmoid), &[vals("N, S0, D")], &["0.5, S0, D"]);
    check(alu(scalar(ScalarOp::Mul, 3.0, false)), &[vals("N, S0, D")], &["0, S0, D"]);
    check(alu(scalar(ScalarOp::Add, 1.0, false)), &[vals("N, 2, S0, D")], &["1, 3, S0, D"]);
    check(alu(scalar(ScalarOp::Max, -1.0, true)), &[vals("N, S0, D")], &["0, S0, D"]);
}

#[test]
fn alu_division_with_a_zero_or_absent_operand_is_zero() {
    // The reference semantics (a quotient is iterated as an intersection): an absent or zero
    // operand gives 0, never NaN or ±inf.
    check(
        alu(AluOp::Div),
        &[vals("1, N, N, 0, 0, 6, S0, D"), vals("N, 2, N, 0, 5, 0, S0, D")],
        &["0, 0, 0, 0, 0, 0, S0, D"],
    );
    check(alu(scalar(ScalarOp::Div, 2.0, true)), &[vals("N, 0, 4, S0, D")], &["0, 0, 0.5, S0, D"]);
    check(alu(scalar(ScalarOp::Div, 0.0, false)), &[vals("N, 3, S0, D")], &["0, 0, S0, D"]);
    check(alu(scalar(ScalarOp::Div, 4.0, false)), &[vals("N, 3, S0, D")], &["0, 0.75, S0, D"]);
}

#[test]
fn alu_passes_stops_with_their_gaps() {
    check_exact(alu(AluOp::Add), &[vals("1, S0, S1'1, D"), vals("2, S0, S1'1, D")], &["3, S0, S1'1, D"]);
    check_exact(alu(AluOp::Neg), &[vals("S0, S2'2, D")], &["S0, S2'2, D"]);
    check(alu(AluOp::Add), &[toks("D"), toks("D")], &["D"]);
}

#[test]
fn alu_errors_are_protocol_errors() {
    // A stop against a number (the SAM simulator's integer-only patch is not applied).
    let m = check_protocol_error(alu(AluOp::Add), &[vals("1, 2, S0, D"), vals("1, S0, D")], 1);
    assert!(m.contains("misaligned"), "{m}");
    // Stop levels disagree.
    check_protocol_error(alu(AluOp::Mul), &[vals("1, S0, D"), vals("1, S1, D")], 1);
    // One operand done early.
    check_protocol_error(alu(AluOp::Mul), &[vals("1, S0, D"), vals("1, S0, 2, S1, D")], 1);
    // A coordinate on a value stream.
    let m = check_protocol_error(alu(AluOp::Add), &[toks("1, S0, D"), vals("1, S0, D")], 1);
    assert!(m.contains("unexpected"), "{m}");
    check_protocol_error(alu(AluOp::Neg), &[toks("R, D")], 1);
}

#[test]
fn alu_counts_operations() {
    let r = run_full(alu(AluOp::Add)(), vec![vals("1, 2, S0, 3, S1, D"), vals("1, 2, S0, 3, S1, D")], 1, None).unwrap();
    assert_eq!(r.ops, 3);
}

// ---------------------------------------------------------------------------------------------
// Scalar reducer (§4.10)

#[test]
fn reduce_section4_10_example() {
    check(
        reduce(ReduceKind::Sum),
        &[vals("7, S0, S0, 8, S1, S0, 12, S0, S1, 28, S0, S0, 32, 45, S2, D")],
        &["7, 0, 8, S0, 0, 12, 0, S0, 28, 0, 77, S1, D"],
    );
}

#[test]
fn reduce_explicit_zero_for_empty_fibers() {
    check(reduce(ReduceKind::Sum), &[vals("5, 5, S0, S0, 4, 8, S0, 4, 3, S0, S1, D")], &["10, 0, 12, 7, 0, S0, D"]);
    check(reduce(ReduceKind::Sum), &[vals("S0, D")], &["0, D"]);
}

#[test]
fn reduce_max_resets_to_minus_infinity_each_fiber() {
    // Comal's bug would give [-3, 0, 0, S0, D].
    check(reduce(ReduceKind::Max), &[vals("-5, -3, S0, -7, -2, S0, S1, D")], &["-3, -2, 0, S0, D"]);
    check(reduce(ReduceKind::Max), &[vals("-1, S1, -9, -4, S1, D")], &["-1, S0, -4, S0, D"]);
}

#[test]
fn reduce_skips_n() {
    check(reduce(ReduceKind::Sum), &[vals("1, N, 2, S0, N, S1, D")], &["3, 0, S0, D"]);
}

#[test]
fn reduce_max_counts_n_as_zero() {
    // `N` is an absent operand's implicit 0: a max over negatives with one is 0.
    check(reduce(ReduceKind::Max), &[vals("-5, N, -3, S0, N, S0, -2, S1, D")], &["0, 0, -2, S0, D"]);
}

#[test]
fn reduce_gap_stops_emit_no_value() {
    // Reducer after an empty outer fiber: the k stream of i → j → k with row i = 1 having no j
    // fiber is [x, S1, S2'1, D]; only the real fiber yields a value.
    check_exact(reduce(ReduceKind::Sum), &[vals("4, S1, S2'1, D")], &["4, S0, S1, D"]);
    // A gap-1 stop of level 0 (a fiber removed by a coordinate dropper) yields nothing at all.
    check_exact(reduce(ReduceKind::Sum), &[vals("5, S0, S0'1, 6, S1, D")], &["5, 6, S0, D"]);
    check_exact(reduce(ReduceKind::Sum), &[vals("S2'2, D")], &["S1'1, D"]);
}

#[test]
fn reduce_after_scanning_an_empty_outer_fiber() {
    // i = {0, 1}: row 0 has j = (0) with k = (x); row 1 has no j at all.
    let j = check_exact(scan_c(&[0, 1, 1], &[0]), &[toks("0, 1, S0, D")], &["0, S0, S1, D", "0, S0, S1, D"]);
    let k = check_exact(scan_c(&[0, 1], &[3]), &[j[1].clone()], &["3, S1, S2'1, D", "0, S1, S2'1, D"]);
    let v = check(array(&[2.5]), &[k[1].clone()], &["2.5, S1, S2, D"]);
    // One value per (i, j) pair; row 1 is an empty fiber, not a 0.
    let red = check_exact(reduce(ReduceKind::Sum), &[v[0].clone()], &["2.5, S0, S1, D"]);
    // The reducer's output has the j crd stream's shape: one value per j coordinate.
    assert_eq!(red[0].len(), j[0].len());
    assert!(red[0].iter().zip(&j[0]).all(|(v, c)| v.is_stop() == c.is_stop()));
}

#[test]
fn reduce_errors_are_protocol_errors() {
    check_protocol_error(reduce(ReduceKind::Sum), &[toks("1, S0, D")], 1);
    check_protocol_error(reduce(ReduceKind::Sum), &[toks("R, S0, D")], 1);
}

#[test]
fn reduce_counts_operations() {
    let r = run_full(reduce(ReduceKind::Sum)(), vec![vals("1, 2, S0, 3, S1, D")], 1, None).unwrap();
    assert_eq!(r.ops, 3);
}

// ---------------------------------------------------------------------------------------------
// Sparse accumulators (§4.11)

#[test]
fn spacc1_fig7_column_sums() {
    // Paper Fig. 7 (n = 1, column sums of B), with the reduced i stream as the extra input.
    check(
        spacc1(ReduceKind::Sum),
        &[toks("0, 1, 3, S0, D"), toks("1, S0, 0, 2, S0, 1, 3, S1, D"), vals("1, S0, 2, 3, S0, 4, 5, S1, D")],
        &["0, 1, 2, 3, S0, D", "2, 5, 3, 5, S0, D"],
    );
}

#[test]
fn spacc1_keeps_empty_reduced_fibers() {
    // Row i = 1 has an empty k fiber: a bare S0 on k and a bare S1'1 on j; the output keeps an
    // empty (real, gap 0) j fiber for it.
    check_exact(
        spacc1(ReduceKind::Sum),
        &[toks("1, S0, S0, 1, S1, D"), toks("0, 3, S1, S1'1, 3, 0, S2, D"), vals("1, 2, S1, S1'1, 3, 4, S2, D")],
        &["0, 3, S0, S0, 0, 3, S1, D", "1, 2, S0, S0, 4, 3, S1, D"],
    );
    check(spacc1(ReduceKind::Sum), &[toks("S0, D"), toks("S1, D"), vals("S1, D")], &["S0, D", "S0, D"]);
}

#[test]
fn spacc1_max_and_n() {
    check(
        spacc1(ReduceKind::Max),
        &[toks("0, 1, 2, S0, D"), toks("4, 1, S0, 4, S0, N, 1, S1, D"), vals("-1, 7, S0, -3, S0, N, 2, S1, D")],
        &["1, 4, S0, D", "7, -1, S0, D"],
    );
}

#[test]
fn spacc1_max_counts_an_absent_value_as_zero() {
    // Coordinate 2 gets -1 and an absent value (an implicit 0): its max is 0.
    check(
        spacc1(ReduceKind::Max),
        &[toks("0, 1, S0, D"), toks("2, 3, S0, 2, S1, D"), vals("-1, -4, S0, N, S1, D")],
        &["2, 3, S0, D", "0, -4, S0, D"],
    );
}

#[test]
fn spacc1_errors_are_protocol_errors() {
    let s = spacc1(ReduceKind::Sum);
    // The inner fiber closes the reduced fiber (S1) but the reduced stream goes on.
    let m = check_protocol_error(&s, &[toks("1, 2, S0, D"), toks("0, S1, 0, S1, D"), vals("1, S1, 1, S1, D")], 2);
    assert!(m.contains("reduced stream"), "{m}");
    // The reduced fiber ends but the inner fiber did not close it.
    check_protocol_error(&s, &[toks("1, S0, D"), toks("0, S0, D"), vals("1, S0, D")], 2);
    // An empty reduced fiber whose inner stop has the wrong level.
    check_protocol_error(&s, &[toks("S0, D"), toks("S0, D"), vals("S0, D")], 2);
    // Inner crd and values out of step.
    check_protocol_error(&s, &[toks("1, S0, D"), toks("0, 2, S1, D"), vals("1, S1, D")], 2);
    check_protocol_error(&s, &[toks("1, S0, D"), toks("0, S1, D"), vals("1, S0, D")], 2);
}

#[test]
fn spacc2_empty_reduced_fiber() {
    check_exact(
        spacc2(ReduceKind::Sum),
        &[toks("S0, D"), toks("S1'1, D"), toks("S2'2, D"), vals("S2'2, D")],
        &["S0, D", "S1'1, D", "S1'1, D"],
    );
}

#[test]
fn spacc2_empty_middle_fiber_and_max() {
    // k = 0 has i = (2) with j = (1); k = 1 has no i; k = 2 has i = (2) with j = (1, 5).
    check(
        spacc2(ReduceKind::Max),
        &[
            toks("0, 1, 2, S0, D"),
            toks("2, S0, S0, 2, S1, D"),
            toks("1, S1, S1, 1, 5, S2, D"),
            vals("-4, S1, S1, -6, 3, S2, D"),
        ],
        &["2, S0, D", "1, 5, S1, D", "-4, 3, S1, D"],
    );
}

#[test]
fn spacc2_errors_are_protocol_errors() {
    let s = spacc2(ReduceKind::Sum);
    // The middle fiber closes the reduced fiber (S1) but the reduced stream goes on.
    let m = check_protocol_error(
        &s,
        &[toks("0, 1, S0, D"), toks("2, S1, 2, S1, D"), toks("1, S2, 1, S2, D"), vals("1, S2, 1, S2, D")],
        3,
    );
    assert!(m.contains("reduced stream"), "{m}");
    // The inner fiber closes the middle fiber (S1) but the middle stream holds a coordinate.
    let m = check_protocol_error(
        &s,
        &[toks("0, S0, D"), toks("2, 3, S1, D"), toks("1, S1, 1, S2, D"), vals("1, S1, 1, S2, D")],
        3,
    );
    assert!(m.contains("middle stream"), "{m}");
    // An empty reduced fiber with the wrong inner levels.
    check_protocol_error(&s, &[toks("S0, D"), toks("S1, D"), toks("S1, D"), vals("S1, D")], 3);
}

// ---------------------------------------------------------------------------------------------
// Coordinate dropper (§4.12)

#[test]
fn crddrop_section4_12_example() {
    // The inner stream keeps its tokens (sam-sim shape) but the dropped fiber's stop is marked.
    let out = check_exact(
        crddrop,
        &[toks("0, 1, 2, 3, S0, D"), toks("1, S0, 0, 2, S0, S0, 1, 3, S1, D")],
        &["0, 1, 3, S0, D", "1, S0, 0, 2, S0, S0'1, 1, 3, S1, D"],
    );
    // Writers downstream store exactly the dropped tensor.
    assert_eq!(write_level(&out[0]), (vec![0, 3], vec![0, 1, 3]));
    assert_eq!(write_level(&out[1]), (vec![0, 1, 3, 5], vec![1, 0, 2, 1, 3]));
}

#[test]
fn crddrop_last_fiber_dropped_and_empty_outer_fibers() {
    check_exact(crddrop, &[toks("0, 1, S0, D"), toks("1, S0, S1, D")], &["0, S0, D", "1, S0, S1'1, D"]);
    // Empty outer fiber: the matching inner stop passes, the stream stays aligned.
    check_exact(crddrop, &[toks("0, S0, S1, D"), toks("5, S1, S2'1, D")], &["0, S0, S1, D", "5, S1, S2'1, D"]);
    check(crddrop, &[toks("S0, D"), toks("S1, D")], &["S0, D", "S1, D"]);
    check(crddrop, &[toks("1, S0, D"), toks("1, 2, S1, D")], &["1, S0, D", "1, 2, S1, D"]);
}

#[test]
fn crddrop_then_reduce_and_write_values() {
    // Values of fibers (5), (), (6) under outer coordinates 0, 1, 2.
    let out = check_exact(
        crddrop,
        &[toks("0, 1, 2, S0, D"), vals("5, S0, S0, 6, S1, D")],
        &["0, 2, S0, D", "5, S0, S0'1, 6, S1, D"],
    );
    check_exact(reduce(ReduceKind::Sum), &[out[1].clone()], &["5, 6, S0, D"]);
    assert_eq!(write_vals(&out[1]), vec![5.0, 6.0]);
    // Without the dropper the reducer emits the explicit 0.
    check(reduce(ReduceKind::Sum), &[vals("5, S0, S0, 6, S1, D")], &["5, 0, 6, S0, D"]);
}

#[test]
fn crddrop_errors_are_protocol_errors() {
    // Outer done while the inner stream has more.
    check_protocol_error(crddrop, &[toks("0, S0, D"), toks("1, S0, 2, S1, D")], 2);
    // Inner done inside a fiber.
    check_protocol_error(crddrop, &[toks("0, S0, D"), toks("1, D")], 2);
    // Empty outer fiber without the matching inner stop.
    check_protocol_error(crddrop, &[toks("S0, D"), toks("S0, D")], 2);
    // The inner fiber closes the outer fiber (S1) but the outer stream holds a coordinate.
    let m = check_protocol_error(crddrop, &[toks("0, 1, S0, D"), toks("5, S1, 6, S1, D")], 2);
    assert!(m.contains("outer stream"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Writers (§4.13)

#[test]
fn level_writer_root_example() {
    assert_eq!(write_level(&toks("0, 1, 3, S0, D")), (vec![0, 3], vec![0, 1, 3]));
    assert_eq!(write_level(&toks("0, 2, 3, S0, 0, 2, 3, S1, D")), (vec![0, 3, 6], vec![0, 2, 3, 0, 2, 3]));
}

#[test]
fn level_writer_stores_empty_fibers_but_skips_gap_stops() {
    // Every gap-0 stop ends a fiber of this level, empty or not (one seg entry per parent).
    assert_eq!(write_level(&toks("S0, 1, S0, S1, D")), (vec![0, 0, 1, 1], vec![1]));
    assert_eq!(write_level(&toks("S0, D")), (vec![0, 0], vec![]));
    // A gap > 0 stop marks an empty fiber further out (or a dropped fiber): no seg entry.
    assert_eq!(write_level(&toks("S0, 1, S0, S1'1, D")), (vec![0, 0, 1], vec![1]));
    assert_eq!(write_level(&toks("5, S1, S1'1, 6, 7, S2, D")), (vec![0, 1, 3], vec![5, 6, 7]));
    assert_eq!(write_level(&toks("D")), (vec![0], vec![]));
}

#[test]
fn level_writer_errors_are_protocol_errors() {
    let lw = || -> Box<dyn Primitive> { Box::<LevelWrite>::default() };
    for bad in [toks("1, N, S0, D"), vals("1.5, S0, D"), toks("R, D")] {
        match run_writer(lw(), vec![bad], None) {
            Err(SimError::Protocol { .. }) => {}
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}

#[test]
fn value_writer_keeps_order_and_explicit_zeros() {
    assert_eq!(write_vals(&vals("1, S0, 0, 3, S1, S1'1, -2.5, S2, D")), vec![1.0, 0.0, 3.0, -2.5]);
    assert_eq!(write_vals(&toks("D")), Vec::<f64>::new());
}

#[test]
fn value_writer_errors_are_protocol_errors() {
    let vw = || -> Box<dyn Primitive> { Box::<ValWrite>::default() };
    for bad in [vals("1, N, S0, D"), toks("1, S0, D")] {
        match run_writer(vw(), vec![bad], None) {
            Err(SimError::Protocol { .. }) => {}
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §5: SpMM X(i,j) = Σ_k B(i,k)·C(k,j), each primitive fed the listed input streams.

#[test]
fn spmm_inner_product_ijk_section5_1() {
    // B DCSR; C column-major (DCSC): columns j = 0, 2, 3 with k = (1), (0), (1, 3).
    let (c0_seg, c0_crd, c1_seg, c1_crd, c_vals) =
        ([0, 3], [0, 2, 3], [0, 1, 2, 4], [1, 0, 1, 3], [7.0, 6.0, 8.0, 9.0]);
    let bi = check(scan_c(&B0_SEG, &B0_CRD), &[toks("0, D")], &["0, 1, 3, S0, D", "0, 1, 2, S0, D"]);
    let rep_ci = repeat_by(&toks("0, D"), &bi[0], "0, 0, 0, S0, D");
    let cj = check(
        scan_c(&c0_seg, &c0_crd),
        &[rep_ci],
        &["0, 2, 3, S0, 0, 2, 3, S0, 0, 2, 3, S1, D", "0, 1, 2, S0, 0, 1, 2, S0, 0, 1, 2, S1, D"],
    );
    let rep_bj = repeat_by(&bi[1], &cj[0], "0, 0, 0, S0, 1, 1, 1, S0, 2, 2, 2, S1, D");
    let bk = check(
        scan_c(&B1_SEG, &B1_CRD),
        &[rep_bj],
        &[
            "1, S0, 1, S0, 1, S1, 0, 2, S0, 0, 2, S0, 0, 2, S1, 1, 3, S0, 1, 3, S0, 1, 3, S2, D",
            "0, S0, 0, S0, 0, S1, 1, 2, S0, 1, 2, S0, 1, 2, S1, 3, 4, S0, 3, 4, S0, 3, 4, S2, D",
        ],
    );
    let ck = check(
        scan_c(&c1_seg, &c1_crd),
        &[cj[1].clone()],
        &[
            "1, S0, 0, S0, 1, 3, S1, 1, S0, 0, S0, 1, 3, S1, 1, S0, 0, S0, 1, 3, S2, D",
            "0, S0, 1, S0, 2, 3, S1, 0, S0, 1, S0, 2, 3, S1, 0, S0, 1, S0, 2, 3, S2, D",
        ],
    );
    let ik = check(
        join(JoinKind::Intersect, &[1, 1]),
        &[bk[0].clone(), bk[1].clone(), ck[0].clone(), ck[1].clone()],
        &[
            "1, S0, S0, 1, S1, S0, 0, S0, S1, 1, S0, S0, 1, 3, S2, D",
            "0, S0, S0, 0, S1, S0, 1, S0, S1, 3, S0, S0, 3, 4, S2, D",
            "0, S0, S0, 2, S1, S0, 1, S0, S1, 0, S0, S0, 2, 3, S2, D",
        ],
    );
    let bv = check(array(&B_VALS), &[ik[1].clone()], &["1, S0, S0, 1, S1, S0, 2, S0, S1, 4, S0, S0, 4, 5, S2, D"]);
    let cv = check(array(&c_vals), &[ik[2].clone()], &["7, S0, S0, 8, S1, S0, 6, S0, S1, 7, S0, S0, 8, 9, S2, D"]);
    let mul = check(
        alu(AluOp::Mul),
        &[bv[0].clone(), cv[0].clone()],
        &["7, S0, S0, 8, S1, S0, 12, S0, S1, 28, S0, S0, 32, 45, S2, D"],
    );
    let red = check(reduce(ReduceKind::Sum), &[mul[0].clone()], &["7, 0, 8, S0, 0, 12, 0, S0, 28, 0, 77, S1, D"]);
    // Without coordinate droppers X stores every candidate (i, j) pair, with explicit zeros.
    assert_eq!(write_level(&bi[0]), (vec![0, 3], vec![0, 1, 3]));
    assert_eq!(write_level(&cj[0]), (vec![0, 3, 6, 9], vec![0, 2, 3, 0, 2, 3, 0, 2, 3]));
    assert_eq!(write_vals(&red[0]), vec![7.0, 0.0, 8.0, 0.0, 12.0, 0.0, 28.0, 0.0, 77.0]);
}

#[test]
fn spmm_gustavson_ikj_section5_2() {
    let bi = check(scan_c(&B0_SEG, &B0_CRD), &[toks("0, D")], &["0, 1, 3, S0, D", "0, 1, 2, S0, D"]);
    let rep_ci = repeat_by(&toks("0, D"), &bi[0], "0, 0, 0, S0, D");
    let bk = check(
        scan_c(&B1_SEG, &B1_CRD),
        &[bi[1].clone()],
        &["1, S0, 0, 2, S0, 1, 3, S1, D", "0, S0, 1, 2, S0, 3, 4, S1, D"],
    );
    let ck = check(
        scan_c(&CR0_SEG, &CR0_CRD),
        &[rep_ci],
        &["0, 1, 3, S0, 0, 1, 3, S0, 0, 1, 3, S1, D", "0, 1, 2, S0, 0, 1, 2, S0, 0, 1, 2, S1, D"],
    );
    let ik = check(
        join(JoinKind::Intersect, &[1, 1]),
        &[bk[0].clone(), bk[1].clone(), ck[0].clone(), ck[1].clone()],
        &["1, S0, 0, S0, 1, 3, S1, D", "0, S0, 1, S0, 3, 4, S1, D", "1, S0, 0, S0, 1, 2, S1, D"],
    );
    let cj = check(
        scan_c(&CR1_SEG, &CR1_CRD),
        &[ik[2].clone()],
        &["0, 3, S1, 2, S1, 0, 3, S0, 3, S2, D", "1, 2, S1, 0, S1, 1, 2, S0, 3, S2, D"],
    );
    let rep_bj = repeat_by(&ik[1], &cj[1], "0, 0, S1, 1, S1, 3, 3, S0, 4, S2, D");
    let bv = check(array(&B_VALS), &[rep_bj], &["1, 1, S1, 2, S1, 4, 4, S0, 5, S2, D"]);
    let cv = check(array(&CR_VALS), &[cj[1].clone()], &["7, 8, S1, 6, S1, 7, 8, S0, 9, S2, D"]);
    let mul = check(alu(AluOp::Mul), &[bv[0].clone(), cv[0].clone()], &["7, 8, S1, 12, S1, 28, 32, S0, 45, S2, D"]);
    let acc = check(
        spacc1(ReduceKind::Sum),
        &[ik[0].clone(), cj[0].clone(), mul[0].clone()],
        &["0, 3, S0, 2, S0, 0, 3, S1, D", "7, 8, S0, 12, S0, 28, 77, S1, D"],
    );
    assert_eq!(write_level(&bi[0]), (vec![0, 3], vec![0, 1, 3]));
    assert_eq!(write_level(&acc[0]), (vec![0, 2, 3, 5], vec![0, 3, 2, 0, 3]));
    assert_eq!(write_vals(&acc[1]), vec![7.0, 8.0, 12.0, 28.0, 77.0]);
}

#[test]
fn spmm_gustavson_with_an_empty_k_intersection() {
    // Row 1 of B is (0, 2) but C row 0 and 2 are now absent: C rows k = 1, 3 only.
    // ∩k for row 1 is empty, so the accumulator keeps an empty j fiber for i = 1.
    let bi = check(scan_c(&B0_SEG, &B0_CRD), &[toks("0, D")], &["0, 1, 3, S0, D", "0, 1, 2, S0, D"]);
    let rep_ci = repeat_by(&toks("0, D"), &bi[0], "0, 0, 0, S0, D");
    let bk = check(
        scan_c(&B1_SEG, &B1_CRD),
        &[bi[1].clone()],
        &["1, S0, 0, 2, S0, 1, 3, S1, D", "0, S0, 1, 2, S0, 3, 4, S1, D"],
    );
    let ck = check(
        scan_c(&[0, 2], &[1, 3]),
        &[rep_ci],
        &["1, 3, S0, 1, 3, S0, 1, 3, S1, D", "0, 1, S0, 0, 1, S0, 0, 1, S1, D"],
    );
    let ik = check(
        join(JoinKind::Intersect, &[1, 1]),
        &[bk[0].clone(), bk[1].clone(), ck[0].clone(), ck[1].clone()],
        &["1, S0, S0, 1, 3, S1, D", "0, S0, S0, 3, 4, S1, D", "0, S0, S0, 0, 1, S1, D"],
    );
    // C rows: k = 1 → j = (0, 3) vals 7, 8; k = 3 → j = (3) val 9.
    let cj = check_exact(
        scan_c(&[0, 2, 3], &[0, 3, 3]),
        &[ik[2].clone()],
        &["0, 3, S1, S1'1, 0, 3, S0, 3, S2, D", "0, 1, S1, S1'1, 0, 1, S0, 2, S2, D"],
    );
    let rep_bj = repeat_by(&ik[1], &cj[1], "0, 0, S1, S1, 3, 3, S0, 4, S2, D");
    let bv = check(array(&B_VALS), &[rep_bj], &["1, 1, S1, S1, 4, 4, S0, 5, S2, D"]);
    let cv = check(array(&[7.0, 8.0, 9.0]), &[cj[1].clone()], &["7, 8, S1, S1, 7, 8, S0, 9, S2, D"]);
    let mul = check(alu(AluOp::Mul), &[bv[0].clone(), cv[0].clone()], &["7, 8, S1, S1, 28, 32, S0, 45, S2, D"]);
    let acc = check_exact(
        spacc1(ReduceKind::Sum),
        &[ik[0].clone(), cj[0].clone(), mul[0].clone()],
        &["0, 3, S0, S0, 0, 3, S1, D", "7, 8, S0, S0, 28, 77, S1, D"],
    );
    // The empty row is stored as an empty fiber: one seg entry per row of the i writer.
    assert_eq!(write_level(&acc[0]), (vec![0, 2, 2, 4], vec![0, 3, 0, 3]));
}

#[test]
fn spmm_outer_product_kij_section5_3() {
    // B as DCSC: k = 0..3 with i = (1), (0, 3), (1), (3) and values 2, 1, 4, 3, 5.
    let (b0_seg, b0_crd, b1_seg, b1_crd, b_vals) =
        ([0, 4], [0, 1, 2, 3], [0, 1, 3, 4, 5], [1, 0, 3, 1, 3], [2.0, 1.0, 4.0, 3.0, 5.0]);
    let bk = check(scan_c(&b0_seg, &b0_crd), &[toks("0, D")], &["0, 1, 2, 3, S0, D", "0, 1, 2, 3, S0, D"]);
    let ck = check(scan_c(&CR0_SEG, &CR0_CRD), &[toks("0, D")], &["0, 1, 3, S0, D", "0, 1, 2, S0, D"]);
    let ik = check(
        join(JoinKind::Intersect, &[1, 1]),
        &[bk[0].clone(), bk[1].clone(), ck[0].clone(), ck[1].clone()],
        &["0, 1, 3, S0, D", "0, 1, 3, S0, D", "0, 1, 2, S0, D"],
    );
    let bi =
        check(scan_c(&b1_seg, &b1_crd), &[ik[1].clone()], &["1, S0, 0, 3, S0, 3, S1, D", "0, S0, 1, 2, S0, 4, S1, D"]);
    let rep_ci = repeat_by(&ik[2], &bi[1], "0, S0, 1, 1, S0, 2, S1, D");
    let cj = check(
        scan_c(&CR1_SEG, &CR1_CRD),
        &[rep_ci],
        &["2, S1, 0, 3, S0, 0, 3, S1, 3, S2, D", "0, S1, 1, 2, S0, 1, 2, S1, 3, S2, D"],
    );
    let rep_bj = repeat_by(&bi[1], &cj[1], "0, S1, 1, 1, S0, 2, 2, S1, 4, S2, D");
    let bv = check(array(&b_vals), &[rep_bj], &["2, S1, 1, 1, S0, 4, 4, S1, 5, S2, D"]);
    let cv = check(array(&CR_VALS), &[cj[1].clone()], &["6, S1, 7, 8, S0, 7, 8, S1, 9, S2, D"]);
    let mul = check(alu(AluOp::Mul), &[bv[0].clone(), cv[0].clone()], &["12, S1, 7, 8, S0, 28, 32, S1, 45, S2, D"]);
    let acc = check(
        spacc2(ReduceKind::Sum),
        &[ik[0].clone(), bi[0].clone(), cj[0].clone(), mul[0].clone()],
        &["0, 1, 3, S0, D", "0, 3, S0, 2, S0, 0, 3, S1, D", "7, 8, S0, 12, S0, 28, 77, S1, D"],
    );
    assert_eq!(write_level(&acc[0]), (vec![0, 3], vec![0, 1, 3]));
    assert_eq!(write_level(&acc[1]), (vec![0, 2, 3, 5], vec![0, 3, 2, 0, 3]));
    assert_eq!(write_vals(&acc[2]), vec![7.0, 8.0, 12.0, 28.0, 77.0]);
}

// ---------------------------------------------------------------------------------------------
// Every primitive reports misaligned or malformed input as a protocol error, never a panic.

#[test]
fn truncated_and_garbage_streams_never_panic() {
    type Make = Box<dyn Fn() -> Box<dyn Primitive>>;
    let prims: Vec<(&str, Make, usize, usize)> = vec![
        ("scan", Box::new(scan_c(&B1_SEG, &B1_CRD)), 1, 2),
        ("dense", Box::new(scan_d(3)), 1, 2),
        ("repsig", Box::new(repsig), 1, 1),
        ("repeat", Box::new(repeat), 2, 1),
        ("intersect", Box::new(join(JoinKind::Intersect, &[1, 1])), 4, 3),
        ("union", Box::new(join(JoinKind::Union, &[1, 1])), 4, 3),
        ("locate", Box::new(|| -> Box<dyn Primitive> { Box::new(Locate::new(4)) }), 2, 1),
        ("array", Box::new(array(&B_VALS)), 1, 1),
        ("alu", Box::new(alu(AluOp::Add)), 2, 1),
        ("reduce", Box::new(reduce(ReduceKind::Sum)), 1, 1),
        ("spacc1", Box::new(spacc1(ReduceKind::Sum)), 3, 2),
        ("spacc2", Box::new(spacc2(ReduceKind::Sum)), 4, 3),
        ("crddrop", Box::new(crddrop), 2, 2),
    ];
    let garbage = [
        toks("S0, 1, D"),
        toks("1, 2"),
        toks("D, 1"),
        toks("N, N, S3, D"),
        vals("0.5, S0, D"),
        toks("R, S, D"),
        toks("0, S1, S0, D"),
    ];
    for (name, make, n_in, n_out) in &prims {
        for g in &garbage {
            for other in &garbage {
                let mut inputs = vec![other.clone(); *n_in];
                inputs[0] = g.clone();
                // Any outcome but a panic is fine here.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_prim(make(), inputs.clone(), *n_out, Some(2))
                }));
                assert!(
                    r.is_ok(),
                    "{name} panicked on {}",
                    inputs.iter().map(|i| fmt(i)).collect::<Vec<_>>().join(" | ")
                );
            }
        }
    }
}
