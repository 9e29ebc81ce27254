//! Unit tests of the tile primitives of blocked runs on literal token streams: the same stop,
//! empty-fiber and done rules as their scalar counterparts, tile values computed in the arena.
//! Every check runs under several channel capacities and requires identical streams.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use fuseflow_graph::{AluOp, ReduceKind};
use fuseflow_sim::prims::{Spacc1, Spacc2};
use fuseflow_sim::tile::{SharedArena, TileAcc, TileAlu, TileArena, TileArray, TileReduce, TileValWrite, ZERO};
use fuseflow_sim::{Primitive, SimError, Token, Written};

/// A 2×2 arena holding, as tiles 1, 2, 3: `[[1,2],[3,4]]` and `[[10,20],[30,40]]` over axes
/// (bit 0, bit 1), and the column `[5, 6]` over bit 0.
fn arena() -> TileArena {
    let mut a = TileArena::new(2);
    a.push(0b11, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    a.push(0b11, &[10.0, 20.0, 30.0, 40.0]).unwrap();
    a.push(0b01, &[5.0, 6.0]).unwrap();
    a
}

/// A stream where integer `k` stands for tile `k` (`0` is [`ZERO`]).
fn tiles(s: &str) -> Vec<Token> {
    toks(s).into_iter().map(|t| if let Token::Idx(k) = t { Token::Tile(k) } else { t }).collect()
}

/// A stream with every tile shown as its values, e.g. `[33, 77], S0, D`.
fn show(a: &TileArena, stream: &[Token]) -> String {
    let parts: Vec<String> = stream
        .iter()
        .map(|t| match t {
            Token::Tile(x) => {
                let v: Vec<String> = a.values(*x).iter().map(|v| v.to_string()).collect();
                format!("[{}]", v.join(" "))
            }
            t => t.to_string(),
        })
        .collect();
    parts.join(", ")
}

/// Runs a fresh primitive on a fresh copy of `base` under every capacity; the streams must be
/// identical (tile ids included: the arena is deterministic). Returns the streams shown as
/// values, and the arena of the last run.
fn run(
    base: &TileArena,
    make: impl Fn(SharedArena) -> Box<dyn Primitive>,
    inputs: &[Vec<Token>],
    n_out: usize,
) -> Result<Vec<String>, SimError> {
    let mut first: Option<Vec<Vec<Token>>> = None;
    let mut arena = Rc::new(RefCell::new(base.clone()));
    for cap in CAPACITIES {
        arena = Rc::new(RefCell::new(base.clone()));
        let out = run_prim(make(arena.clone()), inputs.to_vec(), n_out, cap)?;
        match &first {
            Some(f) => assert_eq!(f, &out, "capacity {cap:?} changed the streams"),
            None => first = Some(out),
        }
    }
    let a = arena.borrow();
    Ok(first.unwrap_or_default().iter().map(|s| show(&a, s)).collect())
}

#[test]
fn reducer_adds_tiles_then_sums_rows_with_empty_fibers_and_nested_stops() {
    let make = |a| -> Box<dyn Primitive> { Box::new(TileReduce::new(a, ReduceKind::Sum, Some(1))) };
    // Fiber 1 holds tiles 1 and 2, fiber 2 is empty (an explicit zero tile), fiber 3 holds 2.
    let out = run(&arena(), make, &[tiles("1, 2, S0, S0, 2, S1, D")], 1).unwrap();
    assert_eq!(out, ["[33 77], [0], [30 70], S0, D"]);
    // A gap stop (an empty outer fiber) yields no tile; `N` adds nothing to a sum.
    let out = run(&arena(), make, &[tiles("1, N, S1, S2'1, D")], 1).unwrap();
    assert_eq!(out, ["[3 7], S0, S1, D"]);
    assert_eq!(run(&arena(), make, &[tiles("D")], 1).unwrap(), ["D"]);
}

#[test]
fn reducer_max_counts_n_as_a_zero_tile() {
    let mut a = arena();
    let neg = a.push(0b11, &[-1.0, -5.0, -2.0, -3.0]).unwrap();
    let make = |a| -> Box<dyn Primitive> { Box::new(TileReduce::new(a, ReduceKind::Max, Some(1))) };
    let out = run(&a, make, &[tiles(&format!("{neg}, S0, {neg}, N, S1, D"))], 1).unwrap();
    assert_eq!(out, ["[-1 -2], [0 0], S0, D"]);
    // Without a blocked reduced variable the tile itself is the result.
    let make = |a| -> Box<dyn Primitive> { Box::new(TileReduce::new(a, ReduceKind::Max, None)) };
    assert_eq!(run(&a, make, &[tiles("1, 2, S0, D")], 1).unwrap(), ["[10 20 30 40], D"]);
}

#[test]
fn alu_broadcasts_contracts_and_rejects_misaligned_streams() {
    // Element-wise product with the column tile 3 broadcast along bit 1.
    let mul = |a| -> Box<dyn Primitive> { Box::new(TileAlu::new(a, AluOp::Mul, None)) };
    let out = run(&arena(), mul, &[tiles("1, S0, 1, S1, D"), tiles("3, S0, N, S1, D")], 1).unwrap();
    assert_eq!(out, ["[5 10 18 24], S0, [0 0 0 0], S1, D"]);
    // Contracting bit 1 of two tiles that share both axes: the rows' dot products
    // (1·10 + 2·20, 3·30 + 4·40); the arena's tests cover a matmul proper.
    let mm = |a| -> Box<dyn Primitive> { Box::new(TileAlu::new(a, AluOp::Mul, Some(1))) };
    let out = run(&arena(), mm, &[tiles("1, S0, D"), tiles("2, S0, D")], 1).unwrap();
    assert_eq!(out, ["[50 250], S0, D"]);
    // A unary operation keeps the axes; an empty stream is just its stops.
    let neg = |a| -> Box<dyn Primitive> { Box::new(TileAlu::new(a, AluOp::Neg, None)) };
    assert_eq!(run(&arena(), neg, &[tiles("3, S0, S1, D")], 1).unwrap(), ["[-5 -6], S0, S1, D"]);
    let err = run(&arena(), mul, &[tiles("1, S0, D"), tiles("S0, D")], 1).unwrap_err();
    assert!(matches!(err, SimError::Protocol { .. }), "{err}");
    let err = run(&arena(), mul, &[vals("1.5, D"), tiles("1, D")], 1).unwrap_err();
    assert!(err.to_string().contains("non-tile"), "{err}");
}

#[test]
fn array_loads_tiles_and_n_as_zero() {
    let make = |_| -> Box<dyn Primitive> { Box::new(TileArray::new(1, 3, 4)) };
    let out = run(&arena(), make, &[toks("1, N, S0, 0, S1, D")], 1).unwrap();
    assert_eq!(out, ["[10 20 30 40], [0], S0, [1 2 3 4], S1, D"]);
    let err = run(&arena(), make, &[toks("3, D")], 1).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_eq!(ZERO, 0);
}

#[test]
fn accumulators_add_tiles_per_coordinate() {
    // Order 1: reduced k = (0, 1); inner j fibers (0, 1) and (1); column sums of tiles.
    let make = |a| -> Box<dyn Primitive> {
        Box::new(Spacc1::new(ReduceKind::Sum).with_tiles(TileAcc { arena: a, axis: None }))
    };
    let out = run(&arena(), make, &[toks("0, 1, S0, D"), toks("0, 1, S0, 1, S1, D"), tiles("1, 2, S0, 2, S1, D")], 2)
        .unwrap();
    assert_eq!(out, ["0, 1, S0, D", "[1 2 3 4], [20 40 60 80], S0, D"]);
    // Reducing a blocked variable sums its in-tile axis of each result; an empty reduced fiber
    // gives an empty inner fiber.
    let make = |a| -> Box<dyn Primitive> {
        Box::new(Spacc1::new(ReduceKind::Sum).with_tiles(TileAcc { arena: a, axis: Some(0) }))
    };
    let out = run(&arena(), make, &[toks("0, S0, S0, D"), toks("1, S1, S1, D"), tiles("1, S1, S1, D")], 2).unwrap();
    assert_eq!(out, ["1, S0, S0, D", "[4 6], S0, S0, D"]);
    // Order 2 in tile mode.
    let make = |a| -> Box<dyn Primitive> {
        Box::new(Spacc2::new(ReduceKind::Sum).with_tiles(TileAcc { arena: a, axis: None }))
    };
    let out = run(
        &arena(),
        make,
        &[toks("0, 1, S0, D"), toks("0, S0, 0, S1, D"), toks("1, S1, 1, S2, D"), tiles("1, S1, 2, S2, D")],
        3,
    )
    .unwrap();
    assert_eq!(out, ["0, S0, D", "1, S1, D", "[11 22 33 44], S1, D"]);
}

#[test]
fn writer_lays_tiles_out_in_output_order_broadcasting_missing_axes() {
    for cap in CAPACITIES {
        let a = Rc::new(RefCell::new(arena()));
        // Output dimensions in logical order are (bit 1, bit 0): tiles are written transposed.
        let w = Box::new(TileValWrite::new(a, vec![1, 0]));
        let Written::Vals(v) = run_writer(w, vec![tiles("1, S0, 3, 0, S1, D")], cap).unwrap() else {
            panic!("a value writer writes values")
        };
        assert_eq!(v, [1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
