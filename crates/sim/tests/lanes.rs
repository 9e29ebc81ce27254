//! Fork and gather (parallel lanes) on literal token streams: the SAM example of
//! sam-semantics.md §4.15, empty fibers, nested stops, `D`, and malformed lanes.

mod common;

use common::*;
use fuseflow_sim::prims::{Fork, Gather};
use fuseflow_sim::Primitive;

fn fork(lanes: u32) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Fork::new(lanes))
}

fn gather(lanes: u32, depth: u32) -> impl Fn() -> Box<dyn Primitive> {
    move || Box::new(Gather::new(lanes, depth))
}

/// The fork of §4.15: data round-robin (the lane advancing across fibers), stops and `D` to
/// every lane.
#[test]
fn fork_splits_round_robin_across_fibers() {
    check_exact(fork(2), &[toks("0, 1, 2, S0, 0, 1, 2, S1, D")], &["0, 2, S0, 1, S1, D", "1, S0, 0, 2, S1, D"]);
}

/// Our gather restores the original stream from those lanes (Comal's gives
/// `0, 2, S0, 1, S0, 1, S0, 0, 2, S1, D`).
#[test]
fn gather_restores_the_forked_stream() {
    let lanes =
        check_exact(fork(2), &[toks("0, 1, 2, S0, 0, 1, 2, S1, D")], &["0, 2, S0, 1, S1, D", "1, S0, 0, 2, S1, D"]);
    check_exact(gather(2, 0), &lanes, &["0, 1, 2, S0, 0, 1, 2, S1, D"]);
}

/// Empty fibers, fibers shorter than the lane count, stops with gaps, and `N` elements go to
/// the lanes and come back unchanged, for any lane count.
#[test]
fn fork_then_gather_is_the_identity() {
    for stream in [
        "D",
        "S0, D",
        "S0, S0, 5, S0, S1, D",
        "0, S0, S0, 1, 2, 3, S1, S1'1, 4, S2, D",
        "N, 1, S0, 2, N, S1, D",
        "1, 2, 3, 4, 5, 6, 7, S0, D",
    ] {
        for lanes in 1..=4u32 {
            let out = run_all_caps(fork(lanes), &[toks(stream)], lanes as usize).unwrap();
            let back = run_all_caps(gather(lanes, 0), &out, 1).unwrap();
            let want = toks(stream);
            assert!(exact_eq(&back[0], &want), "{lanes} lanes: {stream} came back as {}", fmt(&back[0]));
        }
    }
}

/// A value stream forks like a reference stream.
#[test]
fn fork_values() {
    check_exact(fork(3), &[vals("1.5, 2.5, S0, 3.5, S1, D")], &["1.5, S0, S1, D", "2.5, S0, S1, D", "S0, 3.5, S1, D"]);
}

/// Depth 1: each element of the parallelized level is a fiber. The control stream (the
/// level's crd stream: fibers {5, 7, 9}, {} and {4}) tells which lane owns each element and
/// where fibers end; an element's stop merged with its fiber's end in its lane (`S1`) becomes
/// `S0` inside the fiber, and an empty fiber's lone stop (`S1'1`) comes from the lanes.
#[test]
fn gather_nested_restores_stop_levels() {
    let control = toks("5, 7, 9, S0, S0, 4, S1, D");
    let lane0 = toks("1, 2, S0, 3, S1, S1'1, S2'1, D");
    let lane1 = toks("S1, S1'1, 6, S2, D");
    check_exact(gather(2, 1), &[control, lane0, lane1], &["1, 2, S0, S0, 3, S1, S1'1, 6, S2, D"]);
}

/// Depth 2 with three lanes: element subtrees hold inner stops (`S0`) that pass through, and
/// only stops of level ≥ 1 end an element.
#[test]
fn gather_depth_two() {
    let control = toks("0, 1, 2, S0, D");
    // Elements: 0 → [[1], [2, 3]], 1 → [[]], 2 → [[4]]; the fiber ends after element 2.
    let lane0 = toks("1, S0, 2, 3, S2, D");
    let lane1 = toks("S2, D");
    let lane2 = toks("4, S2, D");
    check_exact(gather(3, 2), &[control, lane0, lane1, lane2], &["1, S0, 2, 3, S1, S1, 4, S2, D"]);
}

/// Lanes that disagree about where a fiber ends are a protocol error, not a panic.
#[test]
fn gather_rejects_misaligned_lanes() {
    let msg = check_protocol_error(gather(2, 0), &[toks("1, S0, D"), toks("2, 3, S0, D")], 1);
    assert!(msg.contains("lane 1"), "{msg}");
    let msg = check_protocol_error(gather(2, 1), &[toks("0, S0, D"), toks("1, D"), toks("S1, D")], 1);
    assert!(msg.contains("lane 0"), "{msg}");
}
